"""segcli: semantic segmentation with the FCN and DeepLab families.

    import segcli
    segcli.load("deeplabv3p").predict("photo.jpg").labels

Importing this package does not import torch, so ``segcli --help`` stays fast: the names below are
imported on first use (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load": "segcli.api",
    "predict": "segcli.api",
    "SegmentationEngine": "segcli.engine",
    "LoadedModel": "segcli.loaded_model",
    "Prediction": "segcli.engine",
    "InferenceOptions": "segcli.inference_options",
    "CRFSettings": "segcli.crf",
    "SegcliError": "segcli.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
