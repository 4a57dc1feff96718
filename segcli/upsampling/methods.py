"""The upsampling operators compared by `segcli compare-upsampling`, written out as plain functions.

- nearest: copy the nearest low-resolution value (`nearest-exact`, pixel centres aligned).
- bilinear: `F.interpolate(mode="bilinear", align_corners=False)`, no parameters.
- transposed-fixed: a transposed convolution (zero insertion, then a stride-1 convolution) whose
  kernel is the fixed bilinear filter FCN initialises its `upscore` layers with.
- transposed-learned: the same layer with a learned C x C kernel (only inside the trained decoders).
- unpool: SegNet's max-unpooling: values go back to the positions the encoder's max-pooling
  recorded, zeros elsewhere (only inside the trained decoders: it needs the pooling indices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segcli.errors import UnknownNameError
from segcli.models.base import bilinear_kernel


@dataclass(frozen=True)
class UpsamplingMethod:
    name: str           # as typed after --methods
    training_free: bool  # True: applies to any model's low-resolution logits
    description: str    # one line for the table and --help


METHODS: tuple[UpsamplingMethod, ...] = (
    UpsamplingMethod("nearest", True, "nearest neighbour (nearest-exact), no parameters"),
    UpsamplingMethod("bilinear", True, "bilinear interpolation, align_corners=False, no parameters"),
    UpsamplingMethod("transposed-fixed", True, "transposed convolution with a fixed bilinear kernel (FCN init)"),
    UpsamplingMethod("transposed-learned", False, "transposed convolution, C x C kernel learned from the bilinear init"),
    UpsamplingMethod("unpool", False, "max-unpooling with the encoder's pooling indices (SegNet)"),
)
METHOD_NAMES: tuple[str, ...] = tuple(method.name for method in METHODS)
TRAINING_FREE_METHODS: tuple[str, ...] = tuple(method.name for method in METHODS if method.training_free)


def parse_methods(text: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of method names (None: all `allowed`), in the order given."""
    if text is None:
        return allowed
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise UnknownNameError(f"no upsampling method given; choose from: {', '.join(allowed)}")
    for name in names:
        if name not in METHOD_NAMES:
            raise UnknownNameError(f"unknown upsampling method {name!r}; choose from: {', '.join(METHOD_NAMES)}")
        if name not in allowed:
            raise UnknownNameError(
                f"method {name!r} needs a trained decoder and does not apply to a zoo model's logits; "
                f"with a zoo model use: {', '.join(allowed)}"
            )
    return names


# --------------------------------------------------------------------------- operators

def transposed_bilinear_upsample(logits: torch.Tensor, factor: int) -> torch.Tensor:
    """[N, C, h, w] -> [N, C, h * factor, w * factor] by a depthwise transposed convolution with
    `bilinear_kernel`, stride `factor`, padding `factor // 2` (i.e. the full output cropped by
    factor // 2 on each side). Equal to bilinear interpolation (align_corners=False) except in the
    factor // 2 outermost rows and columns, where the missing (zero) neighbours darken it."""
    channels = logits.shape[1]
    kernel = bilinear_kernel(channels, factor).to(device=logits.device, dtype=logits.dtype)
    return F.conv_transpose2d(logits, kernel, stride=factor, padding=factor // 2, groups=channels)


def max_unpool(values: torch.Tensor, indices: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """Put each value at its recorded flat index (per channel, within an output_size plane); zeros elsewhere.

    `indices` are those of `F.max_pool2d(..., return_indices=True)`; the result equals
    `F.max_unpool2d` and is differentiable with respect to `values`.
    """
    if values.shape != indices.shape:
        raise ValueError(f"values {tuple(values.shape)} and indices {tuple(indices.shape)} differ in shape")
    batch, channels = values.shape[:2]
    height, width = output_size
    flat = values.new_zeros(batch, channels, height * width)
    flat = flat.scatter(2, indices.flatten(2), values.flatten(2))
    return flat.view(batch, channels, height, width)


def upsample_logits_with(method: str, logits: torch.Tensor, size: tuple[int, int],
                         geometry: tuple[int, int] | None = None) -> torch.Tensor:
    """A training-free method applied to low-resolution logits, giving exactly `size`.

    Without `geometry` the logits are taken to span the image (as F.interpolate(size=...) does);
    transposed-fixed then upsamples by the integer factor ceil(max(H / h, W / w)) and, when that
    does not land on `size`, resizes the result to `size` bilinearly (align_corners=False).
    With `geometry=(factor, offset)` (a zoo model's `logit_geometry()`) every method upsamples by
    `factor` and the result is cropped where the model's own unpadded transposed convolution would
    crop it (FCN-VGG16: conv1_1 pads 100, as in Long et al.'s Caffe models).
    """
    if geometry is not None:
        return _upsample_and_crop(method, logits, size, *geometry)
    height, width = size
    if method == "nearest":
        return F.interpolate(logits, size=size, mode="nearest-exact")
    if method == "bilinear":
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    if method == "transposed-fixed":
        low_h, low_w = logits.shape[-2:]
        factor = max(1, math.ceil(max(height / low_h, width / low_w)))
        upsampled = transposed_bilinear_upsample(logits, factor)
        if tuple(upsampled.shape[-2:]) != (height, width):
            upsampled = F.interpolate(upsampled, size=size, mode="bilinear", align_corners=False)
        return upsampled
    if method in METHOD_NAMES:
        raise UnknownNameError(f"method {method!r} needs a trained decoder; it cannot upsample a model's logits")
    raise UnknownNameError(f"unknown upsampling method {method!r}; choose from: {', '.join(METHOD_NAMES)}")


def _upsample_and_crop(method: str, logits: torch.Tensor, size: tuple[int, int], factor: int,
                       offset: int) -> torch.Tensor:
    if method == "nearest":
        upsampled = F.interpolate(logits, scale_factor=factor, mode="nearest-exact")
    elif method == "bilinear":
        upsampled = F.interpolate(logits, scale_factor=factor, mode="bilinear", align_corners=False)
    elif method == "transposed-fixed":
        upsampled = transposed_bilinear_upsample(logits, factor)
    else:
        return upsample_logits_with(method, logits, size)  # raises the right error
    # all three sample the grid of the padded (factor // 2) transposed convolution: shift the crop
    start = offset - factor // 2
    height, width = size
    if start < 0 or upsampled.shape[-2] < start + height or upsampled.shape[-1] < start + width:
        raise ValueError(f"logits {tuple(logits.shape[-2:])} x {factor} cannot be cropped at {offset} to {size}")
    return upsampled[..., start:start + height, start:start + width]
