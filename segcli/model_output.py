"""What a model returns: logits that are not numbers are the checkpoint's fault, never an image's; the
`Prediction` the engine makes of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segcli.errors import ModelOutputError
from segcli.text import printable

if TYPE_CHECKING:
    from segcli.device import ExecutionPlan


def all_finite(logits: torch.Tensor) -> bool:
    """Whether every logit is finite. A float32 sum is finite only then (NaN and inf propagate through it)
    and costs about a tenth of `isfinite().all()`; a sum that overflowed on finite values is settled element-wise."""
    return bool(torch.isfinite(logits.sum(dtype=torch.float32))) or bool(torch.isfinite(logits).all())


def require_finite_logits(logits: torch.Tensor, engine: Any) -> None:
    """Raise ModelOutputError naming a SegmentationEngine's checkpoint (and its file) when any logit is NaN or inf."""
    if all_finite(logits):
        return
    where = f" ({printable(engine.checkpoint.path)})" if engine.checkpoint is not None else ""
    cause = ("its weights hold NaN/inf values, or they overflow in reduced precision: try fp32 precision"
             if engine.plan.autocast_dtype is not None
             else "its weights hold NaN/inf values (a damaged or diverged checkpoint)")
    raise ModelOutputError(f"checkpoint {printable(engine.record.name)}{where} produced non-finite logits "
                           f"(NaN or inf): {cause}",
                           hint="try --precision fp32" if engine.plan.autocast_dtype is not None else None)


@dataclass
class Prediction:
    """The result for one image, at the image's own size."""

    labels: np.ndarray                      # [H, W] class indices (uint8 when the classes fit)
    probabilities: np.ndarray | None = None  # [C, H, W] float32, when asked for
    timings_ms: dict[str, float] = field(default_factory=dict)
    crf: dict | None = None                  # the CRF that ran (segcli.crf.CRFRun.to_dict), when one did
    plan: ExecutionPlan | None = None        # the precision and memory format its forward passes ran in
