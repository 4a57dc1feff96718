"""What an image's outputs are made from: the run's shared facts (`RunInfo`) and one image's
prediction (`ImageResult`). Every output kind (segcli.outputs.kinds, classwise) reads these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segcli.palettes import display_palette, flat_palette

if TYPE_CHECKING:
    from segcli.crf import CRFParams
    from segcli.engine import SegmentationEngine


@dataclass(frozen=True)
class RunInfo:
    """What every image's outputs share: the checkpoint, how the model ran, how outputs are drawn."""

    model: str
    checkpoint: str
    checkpoint_source: str
    device: str
    precision: str                 # as the engine stood when the run began (each image's JSON: what it ran in)
    categories: tuple[str, ...]
    palette: Any                   # as outputs draw it (`display_palette`)
    crf: dict[str, Any] | None = None
    alpha: float = 0.5             # overlay opacity of the class colours
    note: str | None = None        # said in every image's JSON note (e.g. the checkpoint's synthetic-scenes warning)
    classes: tuple[int, ...] | None = None  # the classes masks, cut-outs and RLE keep (--classes); None: their defaults
    settings: dict[str, Any] | None = None  # the options the labels depend on (OutputOptions.settings), in the JSON
    tta: dict[str, Any] | None = None       # {"scales": [...], "flip": bool}; None: no test-time augmentation
    tile: dict[str, Any] | None = None      # {"mode": auto|off|size, "size": px or None, "overlap": fraction}
    input_scales: tuple[float, ...] = (1.0,)  # the checkpoint's multi-scale inputs, logits max-fused
    channels_last: bool | None = None       # the memory format, as `precision`; None: not known

    @classmethod
    def from_engine(cls, engine: "SegmentationEngine", crf: "CRFParams | None" = None, alpha: float = 0.5,
                    classes: tuple[int, ...] | None = None, settings: dict[str, Any] | None = None) -> "RunInfo":
        record = engine.record
        return cls(model=record.model, checkpoint=record.name, checkpoint_source=engine.source,
                   device=str(engine.plan.device), precision=engine.plan.precision,
                   categories=tuple(record.categories), palette=display_palette(record.palette, record.dataset),
                   crf=None if crf is None else asdict(crf), alpha=alpha,
                   # engines that know their checkpoint was trained on synthetic scenes say so
                   note=_note(getattr(engine, "checkpoint_warning", None)), classes=classes, settings=settings,
                   tta=_tta_dict(getattr(engine, "tta", None)), tile=_tile_dict(getattr(engine, "tiling", None)),
                   input_scales=engine.input_scales, channels_last=engine.plan.channels_last)

    @cached_property
    def flat_palette(self) -> list[int]:
        return flat_palette(self.palette, len(self.categories))


def _note(warning: Any) -> str | None:
    """The file records the warning's message (library terms), not the command line's hint."""
    return None if warning is None else str(warning)


def _tta_dict(params: Any) -> dict[str, Any] | None:
    return None if params is None else {"scales": [float(scale) for scale in params.scales], "flip": bool(params.flip)}


def _tile_dict(policy: Any) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {"mode": policy.mode, "size": int(policy.tile_size) if policy.mode == "size" else None,
            "overlap": float(policy.overlap)}


@dataclass
class ImageResult:
    """One image's prediction, as the output kinds write it."""

    path: Path                               # the input file
    rgb: np.ndarray                          # H x W x 3 uint8, as the model saw it
    labels: np.ndarray                       # H x W class indices
    probabilities: np.ndarray | None = None  # C x H x W, when asked for
    note: str | None = None                  # e.g. "animated GIF: first of 3 frames used"
    timings_ms: dict[str, float] = field(default_factory=dict)
    crf: dict[str, Any] | None = None        # the CRF that ran on this image (segcli.crf.CRFRun.to_dict)
    plan: Any = None                         # the ExecutionPlan its forward passes ran in (None: the run's)

    def execution(self, run: "RunInfo") -> tuple[str, str | None]:
        """(precision, memory format) the image ran in: after the execution policy chose, not before."""
        precision, channels_last = (run.precision, run.channels_last) if self.plan is None else \
            (self.plan.precision, self.plan.channels_last)
        return precision, None if channels_last is None else ("channels_last" if channels_last else "contiguous")
