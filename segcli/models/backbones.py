"""Pieces shared by the zoo: option checks, feature extractors, VGG16, ResNet, MobileNetV2/V3.

Key names follow the published layouts (torchvision's ResNet and MobileNet, pytorch-fcn's
VGG16), so a published state dict loads without renaming. Nothing here downloads weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models import mobilenet_v3_large, resnet50, resnet101
from torchvision.models.resnet import Bottleneck

from segcli.errors import UnknownNameError
from segcli.models.base import SegmentationModel, upsample_logits

# --------------------------------------------------------------------------- option checks


def require_positive(option: str, value: float) -> None:
    """Reject a zero or negative multiplier / count with a message naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise UnknownNameError(f"{option} must be a positive number, got {value!r}")


def require_choice(option: str, value: object, choices: Iterable[object]) -> None:
    """Reject a value outside ``choices`` with a message listing them."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(str(choice) for choice in choices)
        raise UnknownNameError(f"{option} must be one of {listed}, got {value!r}")


def check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UnknownNameError(f"num_classes must be a positive integer, got {num_classes!r}")


def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 (width 1.0 keeps the published count)."""
    return max(1, int(round(channels * width)))


# --------------------------------------------------------------------------- generic helpers


class FeatureExtractor(nn.ModuleDict):
    """Runs named child modules in order and returns the outputs of some of them.

    Same key layout as torchvision's ``IntermediateLayerGetter``: children after the last
    returned one are dropped, so ``avgpool``/``fc`` never appear in the state dict.
    """

    def __init__(self, layers: Iterable[tuple[str, nn.Module]], return_layers: dict[str, str]) -> None:
        wanted = dict(return_layers)
        kept: OrderedDict[str, nn.Module] = OrderedDict()
        for name, module in layers:
            if not wanted:
                break
            kept[name] = module
            wanted.pop(name, None)
        if wanted:
            raise ValueError(f"layers not found in the backbone: {sorted(wanted)}")
        super().__init__(kept)
        self.return_layers = dict(return_layers)

    @classmethod
    def from_model(cls, model: nn.Module, return_layers: dict[str, str]) -> "FeatureExtractor":
        return cls(model.named_children(), return_layers)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outputs: dict[str, Tensor] = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                outputs[self.return_layers[name]] = x
        return outputs


class TorchvisionOutputs(SegmentationModel):
    """Mixin for torchvision's FCN / DeepLabV3: the zoo's forward, low-res and aux logits."""

    backbone: nn.Module
    classifier: nn.Module
    aux_classifier: nn.Module | None

    def low_res_logits(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x)["out"])

    def logits_and_aux(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Main and auxiliary logits at the input size (aux is None without an aux head)."""
        features = self.backbone(x)
        out = upsample_logits(self.classifier(features["out"]), x.shape[-2:])
        if self.aux_classifier is None:
            return out, None
        return out, upsample_logits(self.aux_classifier(features["aux"]), x.shape[-2:])


# --------------------------------------------------------------------------- VGG16

VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def vgg16_conv_stages(
    width: float,
    first_padding: int = 1,
    stage_dilations: Sequence[int] = (1, 1, 1, 1, 1),
) -> list[list[tuple[str, nn.Conv2d]]]:
    """VGG16's 13 3x3 convolutions named ``conv1_1 ... conv5_3``, grouped by stage."""
    stages: list[list[tuple[str, nn.Conv2d]]] = []
    in_channels = 3
    for stage_index, (channels, dilation) in enumerate(zip(VGG16_STAGES, stage_dilations), start=1):
        convs = []
        for conv_index, out_channels in enumerate(channels, start=1):
            out_channels = scale_channels(out_channels, width)
            padding = first_padding if (stage_index, conv_index) == (1, 1) else dilation
            conv = nn.Conv2d(in_channels, out_channels, 3, padding=padding, dilation=dilation)
            convs.append((f"conv{stage_index}_{conv_index}", conv))
            in_channels = out_channels
        stages.append(convs)
    return stages


def run_relu_convs(model: nn.Module, names: Sequence[str], x: Tensor) -> Tensor:
    """Apply the named convolutions of ``model`` in order, each followed by ReLU."""
    for name in names:
        x = F.relu(getattr(model, name)(x), inplace=True)
    return x


def init_relu_convs(modules: Iterable[nn.Module]) -> None:
    """He init (fan_out) for convolutions followed by ReLU, zero bias."""
    for module in modules:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------- ResNet

RESNET_BLOCKS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class ScaledResNet(nn.Module):
    """A torchvision-compatible Bottleneck ResNet whose channel counts are scaled by ``width``.

    Same child names as torchvision's ``ResNet`` (conv1, bn1, relu, maxpool, layer1..4);
    no avgpool/fc, which segmentation never uses.
    """

    def __init__(self, blocks: Sequence[int], width: float, replace_stride_with_dilation: Sequence[bool]) -> None:
        super().__init__()
        self.inplanes = scale_channels(64, width)
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(scale_channels(64, width), blocks[0], stride=1, dilate=False)
        self.layer2 = self._make_layer(scale_channels(128, width), blocks[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(scale_channels(256, width), blocks[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(scale_channels(512, width), blocks[3], 2, replace_stride_with_dilation[2])
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        # mirrors torchvision's ResNet._make_layer for Bottleneck, groups=1, base width 64
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        out_planes = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=previous_dilation)]
        self.inplanes = out_planes
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet_backbone(depth: int, width: float, replace_stride_with_dilation: Sequence[bool]) -> nn.Module:
    """ResNet-50/101 with random weights; torchvision's own at width 1.0, else ``ScaledResNet``."""
    require_choice("depth", depth, RESNET_BLOCKS)
    require_positive("width", width)
    dilation = list(replace_stride_with_dilation)
    if width == 1.0:
        builder = resnet50 if depth == 50 else resnet101
        return builder(weights=None, replace_stride_with_dilation=dilation)
    return ScaledResNet(RESNET_BLOCKS[depth], width, dilation)


def resnet_channels(width: float) -> dict[str, int]:
    """Output channels of layer1 / layer3 / layer4 for a backbone built with ``width``."""
    return {
        "layer1": scale_channels(64, width) * Bottleneck.expansion,
        "layer3": scale_channels(256, width) * Bottleneck.expansion,
        "layer4": scale_channels(512, width) * Bottleneck.expansion,
    }


# --------------------------------------------------------------------------- MobileNetV2 (DeepLabV3+ flavour)

# t (expansion), c (channels), n (repeats), s (stride): MobileNetV2's table
MOBILENET_V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                   dilation: int = 1, groups: int = 1) -> nn.Sequential:
    # no padding: the block pads its input itself (see PaddedInvertedResidual)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, 0, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class PaddedInvertedResidual(nn.Module):
    """MobileNetV2 block as trained in DeepLabV3Plus-Pytorch: the *block input* is zero-padded
    by the dilation before the expansion conv, the depthwise conv itself is unpadded.

    Keys match torchvision's ``InvertedResidual`` (``conv.0.0``, ``conv.0.1``, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dilation: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        self.padding = (dilation, dilation, dilation, dilation)
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(in_channels, hidden, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.pad(x, self.padding))
        return x + out if self.use_residual else out


def mobilenet_v2_blocks(width_mult: float, output_stride: int) -> tuple[nn.Sequential, list[int]]:
    """MobileNetV2 ``features[0:18]`` (no final 1x1 conv) with strides beyond ``output_stride``
    turned into dilation, as DeepLabV3Plus-Pytorch builds it; also returns each block's channels.
    """
    require_positive("width_mult", width_mult)
    stem_channels = _make_divisible(32 * width_mult)
    # the stem conv is unpadded in the published checkpoints' code
    blocks: list[nn.Module] = [_conv_bn_relu6(3, stem_channels, 3, stride=2)]
    channels = [stem_channels]
    current_stride, dilation = 2, 1
    in_channels = stem_channels
    for expand_ratio, base_channels, repeats, stride in MOBILENET_V2_SETTING:
        previous_dilation = dilation
        if current_stride == output_stride:
            dilation *= stride
            stride = 1
        else:
            current_stride *= stride
        out_channels = int(base_channels * width_mult)
        for index in range(repeats):
            if index == 0:
                block = PaddedInvertedResidual(in_channels, out_channels, stride, previous_dilation, expand_ratio)
            else:
                block = PaddedInvertedResidual(in_channels, out_channels, 1, dilation, expand_ratio)
            blocks.append(block)
            channels.append(out_channels)
            in_channels = out_channels
    features = nn.Sequential(*blocks)
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return features, channels


# --------------------------------------------------------------------------- DeepLab output stride

# DeepLabV3Plus-Pytorch's two output strides: ASPP rates, and which ResNet stages trade their
# stride for dilation (replace_stride_with_dilation for layer2, layer3, layer4)
DEEPLAB_ASPP_RATES: dict[int, tuple[int, int, int]] = {16: (6, 12, 18), 8: (12, 24, 36)}
RESNET_DILATION_FOR_STRIDE: dict[int, tuple[bool, bool, bool]] = {16: (False, False, True), 8: (False, True, True)}


def mobilenet_v2_split(width_mult: float, output_stride: int) -> tuple[list[tuple[str, nn.Sequential]], int, int]:
    """MobileNetV2 split as DeepLabV3Plus-Pytorch names it: ``low_level_features`` = features[0:4]
    (stride 4) and ``high_level_features`` = features[4:18] (indices kept in the keys).

    Returns the two named stages (in order, for ``FeatureExtractor``) and their output channels.
    """
    require_choice("output_stride", output_stride, DEEPLAB_ASPP_RATES)
    blocks, channels = mobilenet_v2_blocks(width_mult, output_stride)
    stages = [("low_level_features", blocks[:4]), ("high_level_features", blocks[4:])]
    return stages, channels[3], channels[-1]


# --------------------------------------------------------------------------- MobileNetV3-Large


def mobilenet_v3_large_features(width_mult: float) -> tuple[nn.Sequential, list[int]]:
    """torchvision's dilated MobileNetV3-Large ``features`` and its stage indices
    (C0, strided blocks C1..C4, last block C5), as torchvision's segmentation builders use them.
    """
    require_positive("width_mult", width_mult)
    features = mobilenet_v3_large(weights=None, dilated=True, width_mult=width_mult).features
    stage_indices = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    stage_indices.append(len(features) - 1)
    return features, stage_indices


__all__ = [
    "DEEPLAB_ASPP_RATES",
    "FeatureExtractor",
    "PaddedInvertedResidual",
    "RESNET_DILATION_FOR_STRIDE",
    "ScaledResNet",
    "TorchvisionOutputs",
    "VGG16_STAGES",
    "check_num_classes",
    "init_relu_convs",
    "mobilenet_v2_blocks",
    "mobilenet_v2_split",
    "mobilenet_v3_large_features",
    "require_choice",
    "require_positive",
    "resnet_backbone",
    "resnet_channels",
    "run_relu_convs",
    "scale_channels",
    "upsample_logits",
    "vgg16_conv_stages",
]
