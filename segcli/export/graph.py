"""The module that gets exported: uint8 RGB NHWC in, (labels, logits) out, preprocessing inside.

It does what `segcli.engine` does before and after the model forward (channel order, scaling,
mean/std, torchvision's resize of the shorter side, logits back at the input size, argmax), so an
exported graph needs nothing from segcli to run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcli.checkpoints.record import Preprocessing


def resized_input_size(height, width, shorter: int):
    """The network input size after resizing the shorter side to `shorter` (torchvision's rounding).

    Works on ints (eager), on the 0-dim tensors a trace records for sizes, and on torch.export's
    symbolic ints; `shorter * side // short` equals torchvision's `int(shorter * side / short)`
    for every size an image can have, and needs no branch on which side is shorter.
    """
    if torch.jit.is_tracing():
        short = torch.minimum(height, width)  # traced sizes are tensors; min() would freeze the comparison
    else:
        short = torch.sym_min(height, width)
    return shorter * height // short, shorter * width // short


class SegmentationGraph(nn.Module):
    """A zoo model with its checkpoint's preprocessing: `image` uint8 [N, H, W, 3] RGB ->
    `labels` int64 [N, H, W] and `logits` float32 [N, C, H, W], both at the input size."""

    def __init__(self, model: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model = model.eval()
        self.bgr = preprocessing.channel_order == "BGR"
        self.resize_shorter = preprocessing.resize_shorter
        scale = preprocessing.input_scale / 255.0
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32)
        std = torch.tensor(preprocessing.std, dtype=torch.float32)
        # (pixel * scale - mean) / std as one multiply-add per channel
        self.register_buffer("gain", (scale / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("offset", (-mean / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        pixels = image.permute(0, 3, 1, 2).float()
        height, width = pixels.shape[-2], pixels.shape[-1]
        if self.resize_shorter:
            # the engine resizes the uint8 image (antialiased bilinear), so round back to 0..255
            pixels = F.interpolate(pixels, size=resized_input_size(height, width, self.resize_shorter),
                                   mode="bilinear", align_corners=False, antialias=True).round().clamp(0, 255)
        if self.bgr:
            pixels = pixels.flip(1)
        logits = self.model(pixels * self.gain + self.offset)
        if self.resize_shorter:
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return logits.argmax(1), logits.float()
