"""DeepLab v1 LargeFOV: VGG16 at output stride 8 with a dilated fc6, as wangleihitcs/DeepLab-V1-PyTorch has it.

One ``features`` sequence, indexed as that port's ``VGG16_LargeFOV`` (its files load unchanged once
DataParallel's ``module.`` is stripped): conv1_1 .. conv5_3 at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21,
24, 26, 28; pool1-3 ``MaxPool2d(3, 2, 1)`` (floor), pool4/pool5 ``MaxPool2d(3, 1, 1)``, conv5
dilation 2, an ``AvgPool2d(3, 1, 1)`` after pool5, fc6 (32) 3x3 at dilation 12 with 1024 channels,
fc7 (35) 1x1, fc8 (38) scores; every convolution has a bias. Logits are resized to the input with
``align_corners=True``, as the port does.
"""

from __future__ import annotations

from torch import Tensor, nn

from segcli.models.backbones import (
    check_num_classes,
    init_relu_convs,
    require_positive,
    scale_channels,
    vgg16_conv_stages,
)
from segcli.models.base import SegmentationModel

FC6_DILATION = 12


def largefov_features(num_classes: int, width: float) -> nn.Sequential:
    """The 39 layers of ``VGG16_LargeFOV.features`` (ReLUs, pools and dropouts keep their indices)."""
    layers: list[nn.Module] = []
    stages = vgg16_conv_stages(width, stage_dilations=(1, 1, 1, 1, 2))
    for index, stage in enumerate(stages):
        for _, conv in stage:
            layers += [conv, nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(3, stride=2 if index < 3 else 1, padding=1))
    layers.append(nn.AvgPool2d(3, stride=1, padding=1))
    fc_channels = scale_channels(1024, width)
    layers += [
        nn.Conv2d(stages[-1][-1][1].out_channels, fc_channels, 3, padding=FC6_DILATION, dilation=FC6_DILATION),
        nn.ReLU(inplace=True),
        nn.Dropout2d(0.5),
        nn.Conv2d(fc_channels, fc_channels, 1),
        nn.ReLU(inplace=True),
        nn.Dropout2d(0.5),
        nn.Conv2d(fc_channels, num_classes, 1),
    ]
    return nn.Sequential(*layers)


class DeepLabV1LargeFOV(SegmentationModel):
    align_corners = True  # the port's final interpolation

    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        check_num_classes(num_classes)
        require_positive("width", width)
        self.features = largefov_features(num_classes, width)
        init_relu_convs(self.modules())
        nn.init.normal_(self.features[-1].weight, std=0.01)  # as DeepLab initialises its new classifier

    def low_res_logits(self, x: Tensor) -> Tensor:
        return self.features(x)


def deeplabv1(*, num_classes: int, width: float = 1.0) -> DeepLabV1LargeFOV:
    """DeepLab v1 LargeFOV (VGG16, output stride 8); ``width`` scales every hidden channel count."""
    return DeepLabV1LargeFOV(num_classes, width)
