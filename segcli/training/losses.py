"""Per-pixel segmentation losses: cross-entropy with 255 ignored, and its hard-pixel (OHEM) variant."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from segcli.errors import SegcliError
from segcli.palettes import IGNORE_INDEX
from segcli.training.config import LOSSES

OHEM_THRESHOLD = 0.7        # a pixel is "hard" while its true class has probability below this
OHEM_MIN_KEPT = 0.25        # ... and at least this share of the valid pixels (the hardest) always counts


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Cross-entropy with 255 ignored; `ohem` averages it over the hard pixels only.

    OHEM (online hard example mining, as in mmsegmentation's OHEMPixelSampler): pixels whose true
    class has probability below OHEM_THRESHOLD, and never fewer than OHEM_MIN_KEPT of the valid
    pixels (the highest losses). Background, which is most of every scene, then stops drowning out
    the small and thin classes that decide the mean IoU.
    """
    pixel_losses = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX, reduction="none")
    valid = masks != IGNORE_INDEX
    if kind == "ce":
        count = valid.sum()
        return pixel_losses.sum() / count.clamp(min=1)
    if kind != "ohem":
        raise SegcliError(f"unknown loss {kind!r}: use one of {', '.join(LOSSES)}")
    losses = pixel_losses[valid]
    if losses.numel() == 0:
        return pixel_losses.sum() * 0.0
    hard = losses > -math.log(OHEM_THRESHOLD)
    at_least = max(1, int(OHEM_MIN_KEPT * losses.numel()))
    if int(hard.sum()) < at_least:
        return losses.topk(at_least, sorted=False).values.mean()
    return losses[hard].mean()
