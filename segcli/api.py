"""`segcli.load` and `segcli.predict`: the library in two calls (the package root imports them lazily).

    import segcli
    engine = segcli.load("deeplabv3p")             # resolve the weights, build the engine once
    labels = engine.predict("photo.jpg").labels    # HxW class indices
    labels = segcli.predict("photo.jpg", model="deeplabv3p").labels   # the same, engine cached per process
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import TYPE_CHECKING

from segcli.engine import SegmentationEngine
from segcli.model_output import Prediction
from segcli.errors import SyntheticScenesWarning
from segcli.inference_options import FROM_OPTIONS, CRFChoice, InferenceOptions

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    from PIL import Image

__all__ = ["load", "predict"]


def load(model: str | None = None, weights: str | None = None, device: str = "auto",
         options: InferenceOptions | None = None, allow_download: bool = False) -> SegmentationEngine:
    """An engine for `model` (a zoo name; None: the one a named checkpoint is for) with `weights` (a manifest name
    or a file; None: the model's default), on `device`, as `options` say: `SegmentationEngine.load`, its warning
    pointed at the caller. Neither model nor weights: a `CheckpointError`, as every resolution failure."""
    return _load(model, weights, device, options, allow_download, stacklevel=3)


def _load(model: str | None, weights: str | None, device: str, options: InferenceOptions | None, allow_download: bool,
          stacklevel: int) -> SegmentationEngine:
    from segcli.checkpoints.resolve import resolve_checkpoint

    resolved = resolve_checkpoint(model, weights, allow_download=allow_download)
    engine = SegmentationEngine.from_checkpoint(resolved, device=device, options=options)
    if engine.checkpoint_warning:  # as SegmentationEngine.load warns, at the line that called segcli
        warnings.warn(engine.checkpoint_warning, SyntheticScenesWarning, stacklevel=stacklevel)
    return engine


@lru_cache(maxsize=2)
def _cached_engine(model: str | None, weights: str | None, device: str, options: InferenceOptions | None,
                   allow_download: bool) -> SegmentationEngine:
    return _load(model, weights, device, options, allow_download, stacklevel=4)


def predict(image: "np.ndarray | str | Path | Image.Image", *, model: str | None = None, weights: str | None = None,
            device: str = "auto", options: InferenceOptions | None = None, allow_download: bool = False,
            crf: CRFChoice = FROM_OPTIONS, return_probabilities: bool = False) -> Prediction:
    """`load(...)` (the last two engines kept for this process) then `engine.predict(image, ...)`."""
    engine = _cached_engine(model, weights, device, options, allow_download)
    return engine.predict(image, crf=crf, return_probabilities=return_probabilities)
