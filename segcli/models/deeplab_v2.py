"""DeepLab v2: dilated ResNet (output stride 8) with ASPP-L, four 3x3 atrous classifiers summed.

Keys: ``backbone.*`` in torchvision's ResNet naming (``conv1, bn1, layer1..4``) and
``classifier.branches.{0..3}`` for the rate 6/12/18/24 branches.
"""

from __future__ import annotations

from torch import Tensor, nn

from segcli.models.backbones import (
    FeatureExtractor,
    check_num_classes,
    resnet_backbone,
    resnet_channels,
    upsample_logits,
)

ASPP_L_RATES = (6, 12, 18, 24)


class ASPPL(nn.Module):
    """Parallel 3x3 atrous convolutions, each producing class scores; their sum is the output."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...] = ASPP_L_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate) for rate in rates
        )
        for branch in self.branches:
            nn.init.normal_(branch.weight, std=0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, x: Tensor) -> Tensor:
        scores = self.branches[0](x)
        for branch in self.branches[1:]:
            scores = scores + branch(x)
        return scores


class DeepLabV2(nn.Module):
    def __init__(self, backbone: FeatureExtractor, classifier: ASPPL) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def low_res_logits(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x)["out"])

    def forward(self, x: Tensor) -> Tensor:
        return upsample_logits(self.low_res_logits(x), x.shape[-2:])


def deeplabv2(*, num_classes: int, depth: int = 101, width: float = 1.0) -> DeepLabV2:
    """DeepLab v2 ASPP-L on ResNet-``depth`` (50 or 101) at output stride 8."""
    check_num_classes(num_classes)
    resnet = resnet_backbone(depth, width, replace_stride_with_dilation=(False, True, True))
    backbone = FeatureExtractor.from_model(resnet, {"layer4": "out"})
    return DeepLabV2(backbone, ASPPL(resnet_channels(width)["layer4"], num_classes))
