"""DeepLab v2: the Caffe ResNet-101 of the original release (output stride 8) with ASPP-L.

Keys are those of kazuto1011/deeplab-pytorch's ``MSC(DeepLabV2)`` files, so they load unchanged:
``base.layer1.conv1.{conv,bn}`` (7x7/2 stem, then a 3/2/1 max-pool with ceil_mode),
``base.layer{2..5}.block{N}.{reduce,conv3x3,increase}.{conv,bn}`` with ``block1.shortcut``, and
``base.aspp.c{0..3}`` (3x3 at rates 6/12/18/24, with bias, summed). ``base`` is the name of MSC's
wrapped network there. Unlike torchvision's ResNet, the stride sits in the 1x1 ``reduce`` and every
block of a dilated stage is dilated, its first included. isht7/pytorch-deeplab-resnet (``Scale.``)
and speedinghzl/Pytorch-Deeplab (no prefix) hold the same tensors under other names;
``from_pytorch_deeplab_resnet`` renames them.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from torch import Tensor, nn
from torch.nn import functional as F

from segcli.models.backbones import RESNET_BLOCKS, check_num_classes, require_choice, require_positive, scale_channels
from segcli.models.base import SegmentationModel

ASPP_L_RATES = (6, 12, 18, 24)
STAGES = ((64, 1, 1), (128, 2, 1), (256, 1, 2), (512, 1, 4))  # bottleneck width, stride, dilation (layer2..5)


class ConvBN(nn.Module):
    """Convolution without bias, BatchNorm, then ReLU unless ``relu=False`` (keys ``conv``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, relu: bool = True) -> None:
        super().__init__()
        padding = dilation if kernel_size == 3 else kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class CaffeBottleneck(nn.Module):
    """1x1 ``reduce`` (carries the stride), dilated 3x3, 1x1 ``increase``, projection ``shortcut`` when asked."""

    def __init__(self, in_channels: int, mid_channels: int, stride: int, dilation: int, project: bool) -> None:
        super().__init__()
        out_channels = 4 * mid_channels
        self.reduce = ConvBN(in_channels, mid_channels, 1, stride)
        self.conv3x3 = ConvBN(mid_channels, mid_channels, 3, dilation=dilation)
        self.increase = ConvBN(mid_channels, out_channels, 1, relu=False)
        self.shortcut = ConvBN(in_channels, out_channels, 1, stride, relu=False) if project else None

    def forward(self, x: Tensor) -> Tensor:
        residual = self.increase(self.conv3x3(self.reduce(x)))
        return F.relu(residual + (x if self.shortcut is None else self.shortcut(x)))


def caffe_res_layer(blocks: int, in_channels: int, mid_channels: int, stride: int, dilation: int) -> nn.Sequential:
    """``block1`` (projection shortcut, stride) .. ``blockN``, all at the stage's dilation."""
    layer = nn.Sequential()
    for index in range(1, blocks + 1):
        first = index == 1
        layer.add_module(f"block{index}", CaffeBottleneck(in_channels if first else 4 * mid_channels, mid_channels,
                                                          stride if first else 1, dilation, project=first))
    return layer


class ASPPSum(nn.Module):
    """ASPP-L: parallel 3x3 atrous convolutions (``c0..c3``), each giving class scores, summed."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...] = ASPP_L_RATES) -> None:
        super().__init__()
        for index, rate in enumerate(rates):
            branch = nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate)
            nn.init.normal_(branch.weight, std=0.01)
            nn.init.zeros_(branch.bias)
            self.add_module(f"c{index}", branch)

    def forward(self, x: Tensor) -> Tensor:
        branches = iter(self.children())
        scores = next(branches)(x)
        for branch in branches:
            scores = scores + branch(x)
        return scores


def deeplab_v2_network(num_classes: int, blocks: tuple[int, ...], width: float) -> nn.Sequential:
    """``layer1`` (stem), ``layer2..5`` (Caffe ResNet), ``aspp``: the network kazuto names ``base``."""
    stem = scale_channels(64, width)
    network = nn.Sequential(OrderedDict(layer1=nn.Sequential(OrderedDict(
        conv1=ConvBN(3, stem, 7, stride=2),
        pool=nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    ))))
    in_channels = stem
    for layer, (count, (base_width, stride, dilation)) in enumerate(zip(blocks, STAGES), start=2):
        mid = scale_channels(base_width, width)
        network.add_module(f"layer{layer}", caffe_res_layer(count, in_channels, mid, stride, dilation))
        in_channels = 4 * mid
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    network.add_module("aspp", ASPPSum(in_channels, num_classes))
    return network


class DeepLabV2(SegmentationModel):
    """DeepLab v2 (ResNet + ASPP-L), logits at output stride 8; ``input_scales`` gives kazuto's MSC."""

    def __init__(self, num_classes: int, blocks: tuple[int, ...], width: float) -> None:
        super().__init__()
        self.base = deeplab_v2_network(num_classes, blocks, width)

    def low_res_logits(self, x: Tensor) -> Tensor:
        return self.base(x)


# --------------------------------------------------------------------------- isht7 / speedinghzl keys

_ISHT7_PARTS = {"conv1": "reduce.conv", "bn1": "reduce.bn", "conv2": "conv3x3.conv", "bn2": "conv3x3.bn",
                "conv3": "increase.conv", "bn3": "increase.bn", "downsample.0": "shortcut.conv",
                "downsample.1": "shortcut.bn"}
_ISHT7_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.(\w+)$")
_ISHT7_STEM = re.compile(r"(conv1|bn1)\.(\w+)$")
_ISHT7_ASPP = re.compile(r"layer5\.conv2d_list\.(\d+)\.(\w+)$")


def _kazuto_key(key: str) -> str:
    """One isht7 / speedinghzl key in kazuto's naming (unknown keys come back unchanged)."""
    name = key.removeprefix("Scale.")
    if match := _ISHT7_BLOCK.match(name):
        layer, block, part, tensor = match.groups()
        return f"base.layer{int(layer) + 1}.block{int(block) + 1}.{_ISHT7_PARTS[part]}.{tensor}"
    if match := _ISHT7_STEM.match(name):
        part, tensor = match.groups()
        return f"base.layer1.conv1.{'conv' if part == 'conv1' else 'bn'}.{tensor}"
    if match := _ISHT7_ASPP.match(name):
        return f"base.aspp.c{match.group(1)}.{match.group(2)}"
    return key


def from_pytorch_deeplab_resnet(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """isht7's ``Scale.*`` / speedinghzl's unprefixed ``Res_Deeplab`` keys -> this model's (kazuto's)."""
    return {_kazuto_key(key): value for key, value in state.items()}


def deeplabv2(*, num_classes: int, depth: int = 101, width: float = 1.0) -> DeepLabV2:
    """DeepLab v2 ASPP-L on the Caffe ResNet-``depth`` (50 or 101) at output stride 8;
    ``width`` scales every hidden channel count (1.0: the published network)."""
    check_num_classes(num_classes)
    require_choice("depth", depth, RESNET_BLOCKS)
    require_positive("width", width)
    return DeepLabV2(num_classes, RESNET_BLOCKS[depth], width)
