"""The compare-upsampling decoder: the same small network for every method but its upsampling.

Input: the frozen shared encoder's features (`segcli.upsampling.encoder`): the ASPP context at
output stride 16, the projected low-level features at stride 4 and the SegNet-style window
positions of each stage. The decoder reduces the context to `widths[0]` channels (1x1 conv-BN-ReLU),
then four times upsamples `widths[i]` channels x2 with the chosen method and applies one 3x3
conv-BN-ReLU to `widths[i + 1]` channels (the last keeps `widths[-1]`), the one at
stride 4 over the upsampled features concatenated with the low-level ones (as DeepLab v3+ does);
a 1x1 classifier at full resolution. What differs between the five variants is only how each
stage upsamples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segcli.errors import UnknownNameError
from segcli.upsampling.encoder import CONTEXT_CHANNELS, LOW_LEVEL_CHANNELS, flat_indices
from segcli.models.base import bilinear_kernel
from segcli.upsampling.methods import METHOD_NAMES, max_unpool

DEFAULT_WIDTHS = (64, 32, 24, 16)  # channels upsampled by stage (strides 16, 8, 4, 2), see encoder.py
STAGES = 4  # x2 each: output stride 16 -> 1
SKIP_STAGE = 1  # stage i upsamples to stride 16 / 2 ** (i + 1): stage 1 ends at the low-level stride 4
ARCHITECTURE = "segcli-upsampling-decoder"


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Upsample2x(nn.Module):
    """One decoder stage's x2 upsampling; `indices` (unpool) are flat, as max_pool2d gives them."""

    def __init__(self, method: str, channels: int) -> None:
        super().__init__()
        if method not in METHOD_NAMES:
            raise UnknownNameError(f"unknown upsampling method {method!r}; choose from: {', '.join(METHOD_NAMES)}")
        self.method = method
        if method == "transposed-fixed":
            # fixed, so not part of the state dict: the file holds only what was learned
            self.register_buffer("kernel", bilinear_kernel(channels, 2), persistent=False)
        elif method == "transposed-learned":
            self.deconv = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
            with torch.no_grad():  # FCN's initialisation: the bilinear filter on the diagonal
                self.deconv.weight.zero_()
                kernel = bilinear_kernel(1, 2)[0, 0]
                for channel in range(channels):
                    self.deconv.weight[channel, channel] = kernel

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        size = (2 * x.shape[-2], 2 * x.shape[-1])
        if self.method == "nearest":
            return F.interpolate(x, size=size, mode="nearest-exact")
        if self.method == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.method == "transposed-fixed":
            return F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=1, groups=x.shape[1])
        if self.method == "transposed-learned":
            return self.deconv(x)
        return max_unpool(x, indices, size)


@dataclass
class UpsampleMeter:
    """Time and memory of the upsampling calls of forward passes (CUDA: max allocated; CPU: tensor bytes)."""

    device: torch.device
    seconds: float = 0.0
    peak_bytes: int = 0
    calls: int = 0

    @property
    def memory_kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else "tensor_bytes"

    def measure(self, function, *tensors: torch.Tensor) -> torch.Tensor:
        """Run `function()`, adding its time and peak memory; `tensors` are its inputs (for CPU bytes)."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            baseline = torch.cuda.memory_allocated(self.device)
        started = time.perf_counter()
        result = function()
        if cuda:
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        if cuda:
            used = torch.cuda.max_memory_allocated(self.device) - baseline
        else:
            used = sum(t.numel() * t.element_size() for t in (*tensors, result) if t is not None)
        self.peak_bytes = max(self.peak_bytes, int(used))
        return result


class UpsamplingDecoder(nn.Module):
    """Shared-encoder features -> logits at 16x their resolution, upsampling with one `method`."""

    def __init__(self, num_classes: int, method: str, widths: tuple[int, ...] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        if len(widths) != STAGES:
            raise ValueError(f"{len(widths)} widths for {STAGES} stages")
        self.method = method
        self.widths = tuple(widths)
        outputs = (*widths[1:], widths[-1])
        self.reduce = ConvBNReLU(CONTEXT_CHANNELS, widths[0], kernel_size=1)
        self.stages = nn.ModuleList(
            ConvBNReLU(widths[index] + (LOW_LEVEL_CHANNELS if index == SKIP_STAGE else 0), outputs[index])
            for index in range(STAGES))
        self.classifier = nn.Conv2d(outputs[-1], num_classes, 1)
        # built last, so that under one seed every variant starts from the same weights elsewhere
        self.upsamplers = nn.ModuleList(Upsample2x(method, width) for width in widths)
        self.meter: UpsampleMeter | None = None

    def upsampling_parameters(self) -> int:
        """Learned parameters of the upsampling layers (0 for all but transposed-learned)."""
        return sum(p.numel() for p in self.upsamplers.parameters())

    def forward(self, features: dict) -> torch.Tensor:
        """{"context": [N, 256, h, w], "low_level": [N, 48, 4h, 4w], "positions": 4 x uint8 windows}
        -> logits [N, classes, 16h, 16w]."""
        x = self.reduce(features["context"])
        for index, (stage, upsample) in enumerate(zip(self.stages, self.upsamplers)):
            positions = features["positions"][index]
            indices = flat_indices(positions) if self.method == "unpool" else None
            if self.meter is None:
                x = upsample(x, indices)
            else:
                x = self.meter.measure(lambda: upsample(x, indices), x, indices)
            if index == SKIP_STAGE:
                x = torch.cat([x, features["low_level"]], dim=1)
            x = stage(x)
        return self.classifier(x)
