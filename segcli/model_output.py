"""Checks on what a model returns: logits that are not numbers are the checkpoint's fault, never an image's."""

from __future__ import annotations

from typing import Any

import torch

from segcli.errors import ModelOutputError
from segcli.text import printable


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
