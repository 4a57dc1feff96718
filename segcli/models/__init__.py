"""The model zoo: one module per family, one readable table of names.

Every zoo model is a ``segcli.models.base.SegmentationModel`` with
- ``forward(x) -> logits`` of shape [N, num_classes, H, W] at the input size (written once, in the base), and
- ``low_res_logits(x) -> logits`` before the final upsampling (used by compare-upsampling).
Builders are ``build(num_classes: int, **kwargs) -> nn.Module``; unknown kwargs are an error.
This module does not import torch (the CLI reads the table for ``--help``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from segcli.errors import UnknownNameError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str           # zoo name, as typed on the command line
    module: str         # family module under segcli.models
    builder: str        # builder function in that module
    description: str    # one line for `segcli models`


MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("fcn32s", "fcn_vgg", "fcn32s", "FCN-32s, VGG16, original Caffe layout"),
    ModelSpec("fcn16s", "fcn_vgg", "fcn16s", "FCN-16s, VGG16, pool4 skip"),
    ModelSpec("fcn8s", "fcn_vgg", "fcn8s", "FCN-8s, VGG16, pool4 + pool3 skips"),
    ModelSpec("fcn-resnet50", "fcn_resnet", "fcn_resnet50", "FCN head on ResNet-50, output stride 8 (torchvision)"),
    ModelSpec("fcn-resnet101", "fcn_resnet", "fcn_resnet101", "FCN head on ResNet-101, output stride 8 (torchvision)"),
    ModelSpec("deeplabv1", "deeplab_v1", "deeplabv1", "DeepLab v1 LargeFOV, VGG16, dilated fc6 (rate 12), pool5 avg pool"),
    ModelSpec("deeplabv2", "deeplab_v2", "deeplabv2", "DeepLab v2, Caffe ResNet-101, ASPP-L rates 6/12/18/24, multi-scale"),
    ModelSpec("deeplabv3-resnet50", "deeplab_v3", "deeplabv3_resnet50", "DeepLab v3, ResNet-50, ASPP, output stride 8 (torchvision) or 16"),
    ModelSpec("deeplabv3-resnet101", "deeplab_v3", "deeplabv3_resnet101", "DeepLab v3, ResNet-101, ASPP, output stride 8 (torchvision) or 16"),
    ModelSpec("deeplabv3-mobilenet", "deeplab_v3", "deeplabv3_mobilenet", "DeepLab v3, MobileNetV3-Large (torchvision) or MobileNetV2"),
    ModelSpec("deeplabv3p-resnet50", "deeplab_v3plus", "deeplabv3plus_resnet50", "DeepLab v3+, ResNet-50, output stride 16 or 8"),
    ModelSpec("deeplabv3p-resnet101", "deeplab_v3plus", "deeplabv3plus_resnet101", "DeepLab v3+, ResNet-101, output stride 16 or 8"),
    ModelSpec("deeplabv3p-mobilenet", "deeplab_v3plus", "deeplabv3plus_mobilenet", "DeepLab v3+, MobileNetV2, output stride 16 or 8"),
    ModelSpec("lraspp", "lraspp", "lraspp_mobilenet", "LR-ASPP, MobileNetV3-Large (torchvision)"),
)



@dataclass(frozen=True)
class LayoutSpec:
    """A state-dict layout that published checkpoints of a family use: how segcli recognises and reads it.

    The one table of layouts: the manifest's ``"layout"`` names one, ``detect_layout`` tries the markers
    in table order, and ``adapt_layout`` calls the adapter, which lives beside the model it fits.
    """

    name: str                   # a record's "layout"
    wrapper: str | None = None  # a top-level entry only this layout's files hold (its value: the state dict)
    key: str | None = None      # a state-dict key only its files hold (after `module.` and `Scale.`); "x.": prefix
    adapter: str | None = None  # "family_module.function": the file's keys -> the zoo model's
    adapter_note: str = ""      # what the adapter changed, one line for the user
    caffe_input: bool = False   # Caffe-trained: BGR 0..255 minus the mean (when no record of the model says)


LAYOUT_SPECS: tuple[LayoutSpec, ...] = (
    # segcli's own files: keys of segcli's model, plain state dict / safetensors
    LayoutSpec("segcli"),
    # torchvision's segmentation checkpoints (may hold training-only aux_classifier.*)
    LayoutSpec("torchvision", key="aux_classifier."),
    # VainF/DeepLabV3Plus-Pytorch: {"model_state": ..., "optimizer_state": ...}
    LayoutSpec("deeplabv3plus-pytorch", wrapper="model_state"),
    # wkentaro/pytorch-fcn's Caffe-converted FCN-VGG16: conv1_1 ... score_fr, upscore*
    LayoutSpec("pytorch-fcn", key="conv1_1.weight", caffe_input=True),
    # kazuto1011/deeplab-pytorch DeepLab v2: MSC's base.layer1..5, base.aspp.c0..3
    LayoutSpec("deeplab-pytorch", key="base.aspp.c0.weight"),
    # isht7/pytorch-deeplab-resnet (Scale.*) and speedinghzl/Pytorch-Deeplab (no prefix) DeepLab v2
    LayoutSpec("pytorch-deeplab-resnet", key="layer5.conv2d_list.0.weight",
               adapter="deeplab_v2.from_pytorch_deeplab_resnet",
               adapter_note="renamed isht7/speedinghzl DeepLab v2 keys to kazuto1011's "
                            "(layer5.conv2d_list -> base.aspp, ...)"),
    # wangleihitcs/DeepLab-V1-PyTorch DeepLab v1 LargeFOV: module.features.N
    LayoutSpec("deeplab-v1-pytorch", key="features.38.weight"),
)
LAYOUTS: dict[str, LayoutSpec] = {layout.name: layout for layout in LAYOUT_SPECS}


def layout_adapter(layout: LayoutSpec) -> Any:
    """The function that renames a layout's keys to the zoo model's, or None (its keys are the zoo's)."""
    if layout.adapter is None:
        return None
    module, function = layout.adapter.split(".")
    return getattr(importlib.import_module(f"segcli.models.{module}"), function)


ALIASES: dict[str, str] = {
    "deeplabv3p": "deeplabv3p-mobilenet",  # the default DeepLab v3+ backbone
}


def _spec_table() -> dict[str, ModelSpec]:
    table: dict[str, ModelSpec] = {}
    for spec in MODEL_SPECS:
        if spec.name in table:
            raise RuntimeError(f"duplicate model name in MODEL_SPECS: {spec.name}")
        table[spec.name] = spec
    for alias in ALIASES:
        if alias in table:
            raise RuntimeError(f"alias shadows a model name: {alias}")
    return table


_SPECS = _spec_table()
MODEL_NAMES: tuple[str, ...] = tuple(_SPECS)
CHOICES: tuple[str, ...] = MODEL_NAMES + tuple(ALIASES)  # what the CLI accepts


def canonical_name(name: str) -> str:
    """The zoo name behind a name or alias; an unknown name lists the choices."""
    name = ALIASES.get(name, name)
    if name not in _SPECS:
        raise UnknownNameError(f"unknown model {name!r}; choose one of: {', '.join(CHOICES)}")
    return name


def model_spec(name: str) -> ModelSpec:
    return _SPECS[canonical_name(name)]


def build_model(name: str, num_classes: int, **kwargs: Any) -> "nn.Module":
    """Build a zoo model with random weights (no download ever happens here)."""
    spec = model_spec(name)
    module = importlib.import_module(f"segcli.models.{spec.module}")
    builder = getattr(module, spec.builder)
    try:
        return builder(num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise UnknownNameError(f"model {spec.name!r} does not take these options {sorted(kwargs)}: {exc}") from None


def check_input_scales(scales: Iterable[float]) -> tuple[float, ...]:
    """Validated test-time input scales; 1.0 must be one of them (its logits set the output grid)."""
    scales = tuple(float(scale) for scale in scales)
    if any(not scale > 0 for scale in scales):
        raise ValueError(f"input_scales must be > 0, got {list(scales)}")
    if 1.0 not in scales:
        raise ValueError(f"input_scales must include 1.0 (the scale whose logits set the output grid), "
                         f"got {list(scales)}")
    return scales
