"""FCN-32s / 16s / 8s on VGG16, in the Caffe-converted layout of pytorch-fcn.

Layer names match those state dicts (``conv1_1 ... conv5_3, fc6, fc7, score_fr, score_pool4,
score_pool3, upscore*``), so the converted files load with ``strict=True``. ``conv1_1`` pads by
100 and the score maps are cropped by fixed offsets, as in the original Caffe nets. FCN-8s is the
plain (staged) FCN-8s: pool4/pool3 are *not* scaled by 0.01/0.0001 (that is the "at-once" variant).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segcli.models.backbones import (
    check_num_classes,
    init_relu_convs,
    require_positive,
    run_relu_convs,
    scale_channels,
    vgg16_conv_stages,
)
from segcli.models.base import SegmentationModel, bilinear_kernel


def bilinear_upscore(channels: int, stride: int) -> nn.ConvTranspose2d:
    """A learnable ``ConvTranspose2d(bias=False)`` (kernel 2 x stride) initialised to per-channel
    bilinear upsampling: the shared bilinear kernel on the diagonal, zero between channels."""
    kernel = bilinear_kernel(channels, stride)
    layer = nn.ConvTranspose2d(channels, channels, kernel.shape[-1], stride=stride, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[range(channels), range(channels)] = kernel[:, 0]
    return layer


def crop_like(scores: Tensor, offset: int, reference: Tensor) -> Tensor:
    """``scores[..., offset:offset+h, offset:offset+w]`` with (h, w) taken from ``reference``."""
    height, width = reference.shape[-2:]
    return scores[:, :, offset:offset + height, offset:offset + width]


class _FCNVGG16(SegmentationModel):
    """VGG16 trunk with fc6/fc7 as convolutions and the ``score_fr`` classifier.

    The final upsampling is an unpadded transposed convolution by ``upsampling_factor`` whose
    output is cropped at ``crop_offset`` (as in wkentaro/pytorch-fcn and the Caffe models of Long et al., CVPR 2015): it undoes conv1_1's 100-pixel padding.
    """

    upsampling_factor: int
    crop_offset: int

    def __init__(self, num_classes: int, width: float) -> None:
        super().__init__()
        check_num_classes(num_classes)
        require_positive("width", width)
        self._stage_names: list[list[str]] = []
        for stage in vgg16_conv_stages(width, first_padding=100):
            for name, conv in stage:
                self.add_module(name, conv)
            self._stage_names.append([name for name, _ in stage])
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        pool5_channels = self.conv5_3.out_channels
        fc_channels = scale_channels(4096, width)
        self.fc6 = nn.Conv2d(pool5_channels, fc_channels, 7)
        self.drop6 = nn.Dropout2d()
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop7 = nn.Dropout2d()
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        init_relu_convs(self.modules())
        self.num_classes = num_classes

    def _score_layer(self, stage_output: nn.Conv2d) -> nn.Conv2d:
        # skip scores start at zero, so a fresh skip does not disturb the coarser prediction
        layer = nn.Conv2d(stage_output.out_channels, self.num_classes, 1)
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
        return layer

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """pool3, pool4 and the ``score_fr`` map of an input batch."""
        pooled = []
        for names in self._stage_names:
            x = self.pool(run_relu_convs(self, names, x))
            pooled.append(x)
        x = self.drop6(torch.relu(self.fc6(x)))
        x = self.drop7(torch.relu(self.fc7(x)))
        return pooled[2], pooled[3], self.score_fr(x)

    def final_upscore(self) -> nn.ConvTranspose2d:
        raise NotImplementedError

    def upsample(self, logits: Tensor, x: Tensor) -> Tensor:
        return crop_like(self.final_upscore()(logits), self.crop_offset, x).contiguous()

    def logit_geometry(self) -> tuple[int, int]:
        return self.upsampling_factor, self.crop_offset


class FCN32s(_FCNVGG16):
    upsampling_factor, crop_offset = 32, 19

    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        super().__init__(num_classes, width)
        self.upscore = bilinear_upscore(num_classes, self.upsampling_factor)

    def low_res_logits(self, x: Tensor) -> Tensor:
        return self._trunk(x)[2]

    def final_upscore(self) -> nn.ConvTranspose2d:
        return self.upscore


class FCN16s(_FCNVGG16):
    upsampling_factor, crop_offset = 16, 27

    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        super().__init__(num_classes, width)
        self.score_pool4 = self._score_layer(self.conv4_3)
        self.upscore2 = bilinear_upscore(num_classes, 2)
        self.upscore16 = bilinear_upscore(num_classes, self.upsampling_factor)

    def low_res_logits(self, x: Tensor) -> Tensor:
        _, pool4, score = self._trunk(x)
        upscore2 = self.upscore2(score)
        return upscore2 + crop_like(self.score_pool4(pool4), 5, upscore2)

    def final_upscore(self) -> nn.ConvTranspose2d:
        return self.upscore16


class FCN8s(_FCNVGG16):
    upsampling_factor, crop_offset = 8, 31

    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        super().__init__(num_classes, width)
        self.score_pool4 = self._score_layer(self.conv4_3)
        self.score_pool3 = self._score_layer(self.conv3_3)
        self.upscore2 = bilinear_upscore(num_classes, 2)
        self.upscore_pool4 = bilinear_upscore(num_classes, 2)
        self.upscore8 = bilinear_upscore(num_classes, self.upsampling_factor)

    def low_res_logits(self, x: Tensor) -> Tensor:
        pool3, pool4, score = self._trunk(x)
        upscore2 = self.upscore2(score)
        fused_pool4 = upscore2 + crop_like(self.score_pool4(pool4), 5, upscore2)
        upscore_pool4 = self.upscore_pool4(fused_pool4)
        return upscore_pool4 + crop_like(self.score_pool3(pool3), 9, upscore_pool4)

    def final_upscore(self) -> nn.ConvTranspose2d:
        return self.upscore8


def fcn32s(*, num_classes: int, width: float = 1.0) -> FCN32s:
    """FCN-32s (VGG16, one 32x transposed-conv upsampling)."""
    return FCN32s(num_classes, width)


def fcn16s(*, num_classes: int, width: float = 1.0) -> FCN16s:
    """FCN-16s (VGG16 + pool4 skip)."""
    return FCN16s(num_classes, width)


def fcn8s(*, num_classes: int, width: float = 1.0) -> FCN8s:
    """FCN-8s (VGG16 + pool4 and pool3 skips), the staged variant without skip scaling."""
    return FCN8s(num_classes, width)
