"""A small SegNet-style encoder-decoder whose decoders differ only in the upsampling method.

Encoder: 4 stages of two 3x3 conv-BN-ReLU and a 2x2 max-pool that records its indices
(stride 16 in all). Decoder: per stage, upsample x2 with the chosen method, then one 3x3
conv-BN-ReLU; a 1x1 classifier at full resolution. No skip connections, so the only thing
that differs between the five variants is how each decoder stage upsamples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segcli.errors import UnknownNameError
from segcli.upsampling.methods import METHOD_NAMES, bilinear_kernel, max_unpool

DEFAULT_WIDTHS: tuple[int, ...] = (16, 24, 32, 48)
ARCHITECTURE = "segcli-upsampling-net"


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Upsample2x(nn.Module):
    """One decoder stage's x2 upsampling; `size` is the encoder's size before pooling."""

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

    def forward(self, x: torch.Tensor, indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
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


class UpsamplingNet(nn.Module):
    """Encoder with pooling indices + decoder using one upsampling `method` at every stage."""

    def __init__(self, num_classes: int, method: str, widths: tuple[int, ...] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.method = method
        self.widths = tuple(widths)
        self.stride = 2 ** len(widths)
        channels = (3, *widths)
        self.encoder = nn.ModuleList(
            nn.Sequential(ConvBNReLU(c_in, c_out), ConvBNReLU(c_out, c_out))
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.bottleneck = ConvBNReLU(widths[-1], widths[-1])
        # decoder stage i upsamples widths[i] channels, then maps them to widths[i - 1] (widths[0] last)
        self.decoder = nn.ModuleList(
            ConvBNReLU(width, widths[max(index - 1, 0)]) for index, width in enumerate(widths)
        )
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        # built last, so that under one seed every variant starts from the same encoder and decoder weights
        self.upsamplers = nn.ModuleList(Upsample2x(method, width) for width in widths)
        self.meter: UpsampleMeter | None = None

    def upsampling_parameters(self) -> int:
        """Learned parameters of the upsampling layers (0 for all but transposed-learned)."""
        return sum(p.numel() for p in self.upsamplers.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> logits [N, classes, H, W]; any H, W (padded to a multiple of 16 inside)."""
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.stride, (-width) % self.stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        records: list[tuple[torch.Tensor, tuple[int, int]]] = []
        for stage in self.encoder:
            x = stage(x)
            size = (x.shape[-2], x.shape[-1])
            x, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
            records.append((indices, size))
        x = self.bottleneck(x)
        for index in reversed(range(len(self.encoder))):
            indices, size = records[index]
            upsample = self.upsamplers[index]
            if self.meter is None:
                x = upsample(x, indices, size)
            else:
                extra = indices if self.method == "unpool" else None
                x = self.meter.measure(lambda: upsample(x, indices, size), x, extra)
            x = self.decoder[index](x)
        return self.classifier(x)[..., :height, :width]
