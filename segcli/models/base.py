"""What every zoo model shares: one forward, ``logits = upsample(low_res_logits(x))``.

Families implement ``low_res_logits``; FCN-VGG16 replaces ``upsample`` (its transposed
convolution and crop). ``input_scales`` turns on multi-scale inputs whose low-resolution logits
are max-fused (DeepLab v2's MSC); the checkpoint loader sets it from the record, so a model runs
the test protocol its authors published.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from segcli.errors import SegcliError
from segcli.models import check_input_scales


def upsample_logits(logits: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Bilinear upsampling of logits to ``size`` (align_corners=False unless a model's port says otherwise)."""
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=align_corners)


def bilinear_kernel(channels: int, factor: int) -> Tensor:
    """FCN's bilinear filter for a stride-``factor`` transposed convolution, shape [channels, 1, k, k].

    k = 2 * factor - factor % 2, weights 1 - |t - centre| / factor with centre (k - 1) / 2.
    """
    if factor < 1 or channels < 1:
        raise ValueError(f"factor and channels must be >= 1, got factor={factor}, channels={channels}")
    size = 2 * factor - factor % 2
    centre = (size - 1) / 2
    taps = 1.0 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    kernel = taps[:, None] * taps[None, :]
    return kernel.expand(channels, 1, size, size).contiguous()


class SegmentationModel(nn.Module):
    """Base class of the zoo: ``forward(x)`` gives logits [N, C, H, W] at the input size."""

    input_scales: tuple[float, ...] = (1.0,)  # test-time scales whose logits are max-fused
    align_corners: bool = False                     # of the final bilinear upsampling

    def low_res_logits(self, x: Tensor) -> Tensor:
        """Logits before the model's final upsampling (one input scale)."""
        raise NotImplementedError

    def upsample(self, logits: Tensor, x: Tensor) -> Tensor:
        """Low-resolution logits -> logits at the size of the input ``x``."""
        return upsample_logits(logits, x.shape[-2:], self.align_corners)

    def fused_low_res_logits(self, x: Tensor) -> Tensor:
        """Element-wise max over ``input_scales`` of the logits, each resized to the scale-1 grid.

        As kazuto1011/deeplab-pytorch's ``MSC.eval()``: inputs resized by ``scale_factor``
        (bilinear, align_corners=False), their logits bilinearly resized to the 1x logits.
        """
        logits = self.low_res_logits(x)
        for scale in self.input_scales:
            if scale != 1.0:
                scaled = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
                logits = torch.maximum(logits, upsample_logits(self.low_res_logits(scaled), logits.shape[-2:]))
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.upsample(self.fused_low_res_logits(x), x)

    def logit_geometry(self) -> tuple[int, int] | None:
        """(factor, crop offset) of a final unpadded transposed convolution; None when the
        low-resolution logits span the image (bilinear resizing to the input size)."""
        return None


def set_input_scales(model: nn.Module, scales: Iterable[float]) -> None:
    """Run ``model`` at these input scales, max-fused; ``(1.0,)`` is one plain forward pass."""
    scales = check_input_scales(scales)
    if not isinstance(model, SegmentationModel):
        # a fixed network (an exported graph): its scales are baked in, so only what it already does is possible
        if tuple(getattr(model, "input_scales", (1.0,))) == scales:
            return
        raise SegcliError(f"this network runs at input scales {list(getattr(model, 'input_scales', (1.0,)))} fixed "
                          f"inside it; export the checkpoint again with the scales you want")
    model.input_scales = scales
