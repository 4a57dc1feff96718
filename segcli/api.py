"""`segcli.load` and `segcli.predict`: the library in two calls (the package root imports them lazily).

    import segcli
    engine = segcli.load("deeplabv3p")             # resolve the weights, build the engine once
    labels = engine.predict("photo.jpg").labels    # HxW class indices
    labels = segcli.predict("photo.jpg", model="deeplabv3p").labels   # the same, engine cached per process
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from segcli.engine import Prediction, SegmentationEngine
from segcli.inference_options import FROM_OPTIONS, CRFChoice, InferenceOptions

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    from PIL import Image

__all__ = ["load", "predict"]


def load(model: str, weights: str | None = None, device: str = "auto", options: InferenceOptions | None = None,
         allow_download: bool = False) -> SegmentationEngine:
    """An engine for `model` (a zoo name) with `weights` (a manifest name or a file; None: the model's
    default), on `device`, as `options` say: `SegmentationEngine.load`."""
    return SegmentationEngine.load(model, weights=weights, device=device, options=options,
                                   allow_download=allow_download)


@lru_cache(maxsize=2)
def _cached_engine(model: str, weights: str | None, device: str, options: InferenceOptions | None,
                   allow_download: bool) -> SegmentationEngine:
    return load(model, weights, device, options, allow_download)


def predict(image: "np.ndarray | str | Path | Image.Image", *, model: str, weights: str | None = None,
            device: str = "auto", options: InferenceOptions | None = None, allow_download: bool = False,
            crf: CRFChoice = FROM_OPTIONS, return_probabilities: bool = False) -> Prediction:
    """`load(...)` (the last two engines kept for this process) then `engine.predict(image, ...)`."""
    engine = _cached_engine(model, weights, device, options, allow_download)
    return engine.predict(image, crf=crf, return_probabilities=return_probabilities)
