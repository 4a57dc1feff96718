"""The frozen encoder every compare-upsampling decoder shares: the shipped DeepLab v3+ MobileNetV2.

`SharedEncoder(model)(x)` gives, for an input whose sides are multiples of 16:
- `context`: the ASPP output of the trained head ([N, 256, H/16, W/16], output stride 16);
- `low_level`: the head's projected low-level features ([N, 48, H/4, W/4]), which DeepLab v3+'s
  decoder concatenates at stride 4; the compare-upsampling decoders do the same;
- `positions`: per decoder stage (strides 8, 4, 2, 1 in that order) where SegNet's max-pooling
  would have put each maximum: [N, width, h, w] uint8 in 0..3 (row offset * 2 + column offset
  inside the 2x2 window), at the coarser stride h = H / (2 * stride).

MobileNetV2 has no max-pooling layer: it halves the resolution with stride-2 convolutions
(`features[0]`, `[2]`, `[4]`, `[7]`). The closest faithful equivalent of SegNet's pooling indices
is to run each of those layers densely (stride 1, same weights) and max-pool its output 2x2: the
indices then say which of the four positions the strided layer skipped over held the strongest
response, per channel, as SegNet's do. A decoder stage upsamples `widths[i]` channels with the
indices of the first `widths[i]` output channels of the matching encoder layer (the default
widths 64, 32, 24 equal those layers' channel counts, as in SegNet; the last stage keeps 16 of 32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_CHECKPOINT = ("deeplabv3p-mobilenet", "deeplabv3p-mobilenet-synth")  # (model, shipped checkpoint)
ENCODER_STRIDE = 16
STRIDE2_BLOCKS = (7, 4, 2, 0)  # MobileNetV2 features[i] that halve the resolution, coarsest first
CONTEXT_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48
LOW_LEVEL_STRIDE = 4


@dataclass
class EncoderFeatures:
    context: torch.Tensor                  # [N, 256, H/16, W/16] float
    low_level: torch.Tensor                # [N, 48, H/4, W/4] float
    positions: tuple[torch.Tensor, ...]    # 4 x [N, width, H/16 * 2**k, ...] uint8, k = 0..3

    def as_inputs(self) -> dict[str, object]:
        return {"context": self.context, "low_level": self.low_level, "positions": self.positions}


def load_shared_encoder(widths: tuple[int, ...], device: torch.device | str = "cpu") -> "SharedEncoder":
    """The shipped deeplabv3p-mobilenet-synth, frozen, as a `SharedEncoder`."""
    from segcli.checkpoints.loading import load_checkpoint_model
    from segcli.checkpoints.resolve import resolve_checkpoint

    model = load_checkpoint_model(resolve_checkpoint(*ENCODER_CHECKPOINT))
    return SharedEncoder(model, widths).to(device)


class SharedEncoder(nn.Module):
    """A DeepLab v3+ MobileNetV2 model's backbone and ASPP, frozen, returning `EncoderFeatures`."""

    def __init__(self, deeplab: nn.Module, widths: tuple[int, ...]) -> None:
        super().__init__()
        blocks = list(deeplab.backbone["low_level_features"]) + list(deeplab.backbone["high_level_features"])
        self.blocks = nn.ModuleList(blocks)
        self.aspp = deeplab.classifier.aspp
        self.project = deeplab.classifier.project
        self.low_level_index = len(deeplab.backbone["low_level_features"]) - 1
        if len(widths) != len(STRIDE2_BLOCKS):
            raise ValueError(f"{len(widths)} decoder widths for {len(STRIDE2_BLOCKS)} upsampling stages")
        self.widths = {index: width for index, width in zip(STRIDE2_BLOCKS, widths)}
        for index, width in self.widths.items():
            channels = _out_channels(self.blocks[index])
            if channels < width:
                raise ValueError(f"features[{index}] has {channels} channels, fewer than the decoder width {width}")
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "SharedEncoder":
        return super().train(False)  # frozen: BatchNorm and dropout always in inference mode

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> EncoderFeatures:
        if x.shape[-2] % ENCODER_STRIDE or x.shape[-1] % ENCODER_STRIDE:
            raise ValueError(f"input sides must be multiples of {ENCODER_STRIDE}, got {tuple(x.shape[-2:])}")
        positions: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            if index in STRIDE2_BLOCKS:
                dense = _dense_forward(block, x)[:, :self.widths[index]]
                positions[index] = _window_argmax(dense)
            x = block(x)
            if index == self.low_level_index:
                low_level = self.project(x)
        context = self.aspp(x)
        return EncoderFeatures(context, low_level, tuple(positions[i] for i in STRIDE2_BLOCKS))


def _out_channels(block: nn.Module) -> int:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _dense_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`block` with its stride-2 convolution run at stride 1: its output at the input's resolution."""
    if isinstance(block, nn.Sequential):  # the stem: unpadded 3x3 stride-2 conv, BN, ReLU6
        conv, norm, act = block
        return act(norm(F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, conv.bias, 1, 0, conv.dilation, conv.groups)))
    out = F.pad(x, block.padding)  # PaddedInvertedResidual pads its input, the depthwise conv is unpadded
    for layer in block.conv:
        if isinstance(layer, nn.Sequential) and layer[0].stride == (2, 2):
            conv, norm, act = layer
            out = act(norm(F.conv2d(out, conv.weight, conv.bias, 1, 0, conv.dilation, conv.groups)))
        else:
            out = layer(out)
    return out


def _window_argmax(dense: torch.Tensor) -> torch.Tensor:
    """Position (0..3, row-major) of each 2x2 window's maximum, per channel: [N, C, ceil(H/2), ceil(W/2)] uint8.

    An odd side (the unpadded stem gives 63 rows for 128) gets a last window over one row or column,
    as max-pooling with ceil_mode does."""
    if dense.shape[-2] % 2 or dense.shape[-1] % 2:
        dense = F.pad(dense, (0, dense.shape[-1] % 2, 0, dense.shape[-2] % 2), value=float("-inf"))
    batch, channels, height, width = dense.shape
    windows = dense.reshape(batch, channels, height // 2, 2, width // 2, 2).permute(0, 1, 2, 4, 3, 5)
    return windows.reshape(batch, channels, height // 2, width // 2, 4).argmax(-1).to(torch.uint8)


def flat_indices(positions: torch.Tensor) -> torch.Tensor:
    """Window positions [N, C, h, w] (0..3) -> flat indices into the [2h, 2w] plane, as max_pool2d returns."""
    height, width = positions.shape[-2:]
    rows = torch.arange(height, device=positions.device).view(-1, 1) * 2
    columns = torch.arange(width, device=positions.device).view(1, -1) * 2
    pos = positions.long()
    return (rows + pos // 2) * (2 * width) + columns + pos % 2
