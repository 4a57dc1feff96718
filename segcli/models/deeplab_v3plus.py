"""DeepLab v3+ in the state-dict layout of DeepLabV3Plus-Pytorch (the most used PyTorch release).

``backbone.*`` is a ResNet (``conv1, bn1, layer1..4``; low level = layer1) or a MobileNetV2
(``low_level_features`` = features[0:4], ``high_level_features`` = features[4:-1]);
``classifier.*`` is the head: ``project`` (low level -> 48 ch), ``aspp`` (1x1, three dilated 3x3,
image pooling; ``project`` 1280 -> 256, dropout 0.1) and ``classifier`` (one 3x3 conv 304 -> 256,
then 1x1 to classes). Output stride 16 uses ASPP rates 6/12/18, output stride 8 uses 12/24/36.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from segcli.models.backbones import (DEEPLAB_ASPP_RATES, RESNET_DILATION_FOR_STRIDE, FeatureExtractor,
                                     check_num_classes, mobilenet_v2_blocks, require_choice, resnet_backbone,
                                     resnet_channels, scale_channels)
from segcli.models.base import upsample_logits
from segcli.models.base import SegmentationModel

ASPP_RATES = DEEPLAB_ASPP_RATES  # output stride -> ASPP rates, shared with DeepLab v3
RESNET_DILATION = RESNET_DILATION_FOR_STRIDE


class DeepLabV3PlusHead(nn.Module):
    """Decoder: ASPP on the high-level features, upsampled to the projected low-level ones."""

    def __init__(self, in_channels: int, low_level_channels: int, num_classes: int,
                 atrous_rates: tuple[int, int, int], width: float = 1.0) -> None:
        super().__init__()
        low_channels, aspp_channels = scale_channels(48, width), scale_channels(256, width)
        self.project = nn.Sequential(
            nn.Conv2d(low_level_channels, low_channels, 1, bias=False),
            nn.BatchNorm2d(low_channels),
            nn.ReLU(inplace=True),
        )
        self.aspp = ASPP(in_channels, atrous_rates, out_channels=aspp_channels)
        self.aspp.project[3] = nn.Dropout(0.1)  # the published head drops 0.1, torchvision's 0.5
        self.classifier = nn.Sequential(
            nn.Conv2d(low_channels + aspp_channels, aspp_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(aspp_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(aspp_channels, num_classes, 1),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        low_level = self.project(features["low_level"])
        context = upsample_logits(self.aspp(features["out"]), low_level.shape[-2:])
        return self.classifier(torch.cat([low_level, context], dim=1))


class DeepLabV3Plus(SegmentationModel):
    """Backbone returning ``low_level`` and ``out`` features, then the v3+ head; logits at stride 4."""

    def __init__(self, backbone: FeatureExtractor, classifier: DeepLabV3PlusHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def low_res_logits(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x))


def _deeplabv3plus_resnet(depth: int, num_classes: int, output_stride: int, width: float) -> DeepLabV3Plus:
    check_num_classes(num_classes)
    require_choice("output_stride", output_stride, ASPP_RATES)
    resnet = resnet_backbone(depth, width, RESNET_DILATION[output_stride])
    channels = resnet_channels(width)
    backbone = FeatureExtractor.from_model(resnet, {"layer4": "out", "layer1": "low_level"})
    head = DeepLabV3PlusHead(channels["layer4"], channels["layer1"], num_classes, ASPP_RATES[output_stride], width)
    return DeepLabV3Plus(backbone, head)


def deeplabv3plus_resnet50(*, num_classes: int, output_stride: int = 16, width: float = 1.0) -> DeepLabV3Plus:
    """DeepLab v3+, ResNet-50; ``width`` scales backbone and head channels (1.0 = published)."""
    return _deeplabv3plus_resnet(50, num_classes, output_stride, width)


def deeplabv3plus_resnet101(*, num_classes: int, output_stride: int = 16, width: float = 1.0) -> DeepLabV3Plus:
    """DeepLab v3+, ResNet-101; ``width`` scales backbone and head channels (1.0 = published)."""
    return _deeplabv3plus_resnet(101, num_classes, output_stride, width)


def deeplabv3plus_mobilenet(*, num_classes: int, output_stride: int = 16, width_mult: float = 1.0) -> DeepLabV3Plus:
    """DeepLab v3+, MobileNetV2 (low level after features[3], stride 4; high level stride 16 or 8)."""
    check_num_classes(num_classes)
    require_choice("output_stride", output_stride, ASPP_RATES)
    blocks, channels = mobilenet_v2_blocks(width_mult, output_stride)
    backbone = FeatureExtractor(
        [("low_level_features", blocks[:4]), ("high_level_features", blocks[4:])],
        {"low_level_features": "low_level", "high_level_features": "out"},
    )
    head = DeepLabV3PlusHead(channels[-1], channels[3], num_classes, ASPP_RATES[output_stride])
    return DeepLabV3Plus(backbone, head)
