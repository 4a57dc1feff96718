"""DeepLab v3 (ASPP head) on a dilated ResNet, MobileNetV3-Large or MobileNetV2.

State-dict keys equal torchvision's ``deeplabv3_resnet50/101`` and
``deeplabv3_mobilenet_v3_large`` (``backbone.*``, ``classifier.N.*``, ``aux_classifier.*`` when
``aux=True``). By default ResNets run at output stride 8 with ASPP rates 12/24/36 and
MobileNetV3 at 16, as torchvision. ``output_stride=16`` on a ResNet dilates only layer4 and
uses rates 6/12/18; ``backbone="mobilenet_v2"`` is DeepLabV3Plus-Pytorch's DeepLab v3
(``backbone.low_level_features`` / ``backbone.high_level_features``). Both fit that project's
DeepLab v3 checkpoints once their ``classifier.classifier.N.*`` head is renamed
``classifier.N.*`` (done by ``segcli.checkpoints.loading.adapt_layout``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchvision.models.segmentation import DeepLabV3
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.models.segmentation.fcn import FCNHead

from segcli.errors import UnknownNameError
from segcli.models.backbones import (
    DEEPLAB_ASPP_RATES,
    RESNET_DILATION_FOR_STRIDE,
    FeatureExtractor,
    TorchvisionOutputs,
    check_num_classes,
    mobilenet_v2_split,
    mobilenet_v3_large_features,
    require_choice,
    resnet_backbone,
    resnet_channels,
    scale_channels,
)

TORCHVISION_ASPP_RATES = DEEPLAB_ASPP_RATES[8]  # (12, 24, 36)
MOBILENET_BACKBONES = ("mobilenet_v3_large", "mobilenet_v2")
PUBLISHED_ASPP_DROPOUT = 0.1  # DeepLabV3Plus-Pytorch's ASPP; torchvision's drops 0.5


class DeepLabV3Model(TorchvisionOutputs, DeepLabV3):
    """torchvision's DeepLabV3 whose ``forward`` returns the ``out`` logits as a plain tensor."""


def deeplab_head(in_channels: int, num_classes: int, head_channels: int = 256,
                 atrous_rates: Sequence[int] = TORCHVISION_ASPP_RATES, dropout: float = 0.5) -> nn.Sequential:
    """torchvision's ``DeepLabHead`` (same keys), with channels, rates and ASPP dropout configurable."""
    aspp = ASPP(in_channels, atrous_rates, out_channels=head_channels)
    aspp.project[3] = nn.Dropout(dropout)
    return nn.Sequential(
        aspp,
        nn.Conv2d(head_channels, head_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(head_channels),
        nn.ReLU(),
        nn.Conv2d(head_channels, num_classes, 1),
    )


def _deeplabv3_resnet(depth: int, num_classes: int, aux: bool, width: float, output_stride: int) -> DeepLabV3Model:
    check_num_classes(num_classes)
    require_choice("output_stride", output_stride, DEEPLAB_ASPP_RATES)
    resnet = resnet_backbone(depth, width, RESNET_DILATION_FOR_STRIDE[output_stride])
    channels = resnet_channels(width)
    return_layers = {"layer4": "out"}
    if aux:
        return_layers["layer3"] = "aux"
    backbone = FeatureExtractor.from_model(resnet, return_layers)
    classifier = deeplab_head(channels["layer4"], num_classes, scale_channels(256, width),
                              DEEPLAB_ASPP_RATES[output_stride])
    aux_classifier: nn.Module | None = FCNHead(channels["layer3"], num_classes) if aux else None
    return DeepLabV3Model(backbone, classifier, aux_classifier)


def deeplabv3_resnet50(*, num_classes: int, aux: bool = False, width: float = 1.0,
                       output_stride: int = 8) -> DeepLabV3Model:
    """DeepLab v3, ResNet-50 at output stride 8 (torchvision) or 16; ``width`` scales all channels."""
    return _deeplabv3_resnet(50, num_classes, aux, width, output_stride)


def deeplabv3_resnet101(*, num_classes: int, aux: bool = False, width: float = 1.0,
                        output_stride: int = 8) -> DeepLabV3Model:
    """DeepLab v3, ResNet-101 at output stride 8 (torchvision) or 16; ``width`` scales all channels."""
    return _deeplabv3_resnet(101, num_classes, aux, width, output_stride)


def _deeplabv3_mobilenet_v3_large(num_classes: int, aux: bool, width_mult: float) -> DeepLabV3Model:
    features, stages = mobilenet_v3_large_features(width_mult)
    out_pos, aux_pos = stages[-1], stages[-4]  # C5 (stride 16) and C2 (stride 8), as torchvision
    return_layers = {str(out_pos): "out"}
    if aux:
        return_layers[str(aux_pos)] = "aux"
    backbone = FeatureExtractor.from_model(features, return_layers)
    classifier = deeplab_head(features[out_pos].out_channels, num_classes)
    aux_classifier: nn.Module | None = FCNHead(features[aux_pos].out_channels, num_classes) if aux else None
    return DeepLabV3Model(backbone, classifier, aux_classifier)


def _deeplabv3_mobilenet_v2(num_classes: int, width_mult: float, output_stride: int) -> DeepLabV3Model:
    stages, _, high_channels = mobilenet_v2_split(width_mult, output_stride)
    # the low-level stage only feeds the high-level one here, but it keeps its published name
    backbone = FeatureExtractor(stages, {"high_level_features": "out"})
    classifier = deeplab_head(high_channels, num_classes, atrous_rates=DEEPLAB_ASPP_RATES[output_stride],
                              dropout=PUBLISHED_ASPP_DROPOUT)
    return DeepLabV3Model(backbone, classifier, None)


def deeplabv3_mobilenet(*, num_classes: int, aux: bool = False, width_mult: float = 1.0,
                        backbone: str = "mobilenet_v3_large", output_stride: int = 16) -> DeepLabV3Model:
    """DeepLab v3 on torchvision's dilated MobileNetV3-Large (output stride 16, aux head on C2),
    or on DeepLabV3Plus-Pytorch's MobileNetV2 (``backbone="mobilenet_v2"``, output stride 16 or 8).
    """
    check_num_classes(num_classes)
    require_choice("backbone", backbone, MOBILENET_BACKBONES)
    if backbone == "mobilenet_v2":
        if aux:
            raise UnknownNameError("aux=True needs backbone 'mobilenet_v3_large': the MobileNetV2 "
                                   "DeepLab v3 has no auxiliary head; leave aux off")
        return _deeplabv3_mobilenet_v2(num_classes, width_mult, output_stride)
    if output_stride != 16:
        raise UnknownNameError(f"output_stride {output_stride!r} needs backbone 'mobilenet_v2': "
                               f"torchvision's MobileNetV3-Large runs at output stride 16 only")
    return _deeplabv3_mobilenet_v3_large(num_classes, aux, width_mult)
