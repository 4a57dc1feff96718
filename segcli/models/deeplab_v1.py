"""DeepLab v1 LargeFOV: VGG16 at output stride 8 with a dilated fc6, bilinear upsampling.

pool1-3 are 3x3/stride 2 (pad 1), pool4/pool5 3x3/stride 1 (pad 1); conv5 uses dilation 2;
fc6 is a 3x3 convolution with dilation 12 and 1024 channels, fc7 a 1x1 with 1024, fc8 scores.
Names follow the Caffe prototxt (``conv1_1 ... conv5_3, fc6, fc7, fc8``).
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
    upsample_logits,
    vgg16_conv_stages,
)


class DeepLabV1LargeFOV(nn.Module):
    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        check_num_classes(num_classes)
        require_positive("width", width)
        self._stage_names: list[list[str]] = []
        for stage in vgg16_conv_stages(width, stage_dilations=(1, 1, 1, 1, 2)):
            for name, conv in stage:
                self.add_module(name, conv)
            self._stage_names.append([name for name, _ in stage])
        self.pools = nn.ModuleList(
            [nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True) for _ in range(3)]
            + [nn.MaxPool2d(3, stride=1, padding=1) for _ in range(2)]
        )
        fc_channels = scale_channels(1024, width)
        self.fc6 = nn.Conv2d(self.conv5_3.out_channels, fc_channels, 3, padding=12, dilation=12)
        self.drop6 = nn.Dropout2d(0.5)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop7 = nn.Dropout2d(0.5)
        self.fc8 = nn.Conv2d(fc_channels, num_classes, 1)
        init_relu_convs(self.modules())
        nn.init.normal_(self.fc8.weight, std=0.01)  # as DeepLab initialises its new classifier

    def low_res_logits(self, x: Tensor) -> Tensor:
        for names, pool in zip(self._stage_names, self.pools):
            x = pool(run_relu_convs(self, names, x))
        x = self.drop6(torch.relu(self.fc6(x)))
        x = self.drop7(torch.relu(self.fc7(x)))
        return self.fc8(x)

    def forward(self, x: Tensor) -> Tensor:
        return upsample_logits(self.low_res_logits(x), x.shape[-2:])


def deeplabv1(*, num_classes: int, width: float = 1.0) -> DeepLabV1LargeFOV:
    """DeepLab v1 LargeFOV (VGG16, output stride 8); ``width`` scales every hidden channel count."""
    return DeepLabV1LargeFOV(num_classes, width)
