"""FCN head on a dilated ResNet (output stride 8), in torchvision's layout.

State-dict keys equal torchvision's ``fcn_resnet50/101``: ``backbone.*``, ``classifier.*`` and,
with ``aux=True``, ``aux_classifier.*`` (the training-only head stored in torchvision's files).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.segmentation import FCN
from torchvision.models.segmentation.fcn import FCNHead

from segcli.models.backbones import (
    FeatureExtractor,
    TorchvisionOutputs,
    check_num_classes,
    resnet_backbone,
    resnet_channels,
)


class FCNResNet(TorchvisionOutputs, FCN):
    """torchvision's FCN whose ``forward`` returns the ``out`` logits as a plain tensor."""


def _fcn_resnet(depth: int, num_classes: int, aux: bool, width: float) -> FCNResNet:
    check_num_classes(num_classes)
    resnet = resnet_backbone(depth, width, replace_stride_with_dilation=(False, True, True))
    channels = resnet_channels(width)
    return_layers = {"layer4": "out"}
    if aux:
        return_layers["layer3"] = "aux"
    backbone = FeatureExtractor.from_model(resnet, return_layers)
    aux_classifier: nn.Module | None = FCNHead(channels["layer3"], num_classes) if aux else None
    return FCNResNet(backbone, FCNHead(channels["layer4"], num_classes), aux_classifier)


def fcn_resnet50(*, num_classes: int, aux: bool = False, width: float = 1.0) -> FCNResNet:
    """FCN, ResNet-50 backbone at output stride 8; ``width`` scales the ResNet's channels."""
    return _fcn_resnet(50, num_classes, aux, width)


def fcn_resnet101(*, num_classes: int, aux: bool = False, width: float = 1.0) -> FCNResNet:
    """FCN, ResNet-101 backbone at output stride 8; ``width`` scales the ResNet's channels."""
    return _fcn_resnet(101, num_classes, aux, width)
