"""LR-ASPP on a dilated MobileNetV3-Large, in torchvision's layout (``lraspp_mobilenet_v3_large``).

No aux head (torchvision's file has none). Low-level features from C2 (stride 8), high-level
from C5 (stride 16); the head's output is at stride 8.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.models.segmentation import LRASPP

from segcli.models.backbones import (
    FeatureExtractor,
    check_num_classes,
    mobilenet_v3_large_features,
)
from segcli.models.base import SegmentationModel


class LRASPPModel(SegmentationModel, LRASPP):
    """torchvision's LRASPP with the zoo's forward (a plain tensor at the input size)."""

    def low_res_logits(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x))


def lraspp_mobilenet(*, num_classes: int, width_mult: float = 1.0) -> LRASPPModel:
    """LR-ASPP, MobileNetV3-Large; ``width_mult`` scales the backbone."""
    check_num_classes(num_classes)
    features, stages = mobilenet_v3_large_features(width_mult)
    low_pos, high_pos = stages[-4], stages[-1]  # C2 (stride 8) and C5 (stride 16), as torchvision
    backbone = FeatureExtractor.from_model(features, {str(low_pos): "low", str(high_pos): "high"})
    return LRASPPModel(
        backbone,
        features[low_pos].out_channels,
        features[high_pos].out_channels,
        num_classes,
    )
