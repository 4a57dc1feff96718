"""DeepLab v3 checkpoints of DeepLabV3Plus-Pytorch (VainF/DeepLabV3Plus-Pytorch's network code) in the zoo's deeplabv3-* models.

Their files hold ``backbone.*`` (torchvision ResNet names, or MobileNetV2 split into
``low_level_features`` / ``high_level_features``) and the DeepLab v3 head under
``classifier.classifier.N.*``; the zoo names that head ``classifier.N.*`` (torchvision) and
``loading.adapt_layout`` renames it. Layouts are checked at full size on the meta device; the
loaded forward is checked at small width against a head wired by hand from the file's tensors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch.nn import functional as F

from segcli.checkpoints.loading import adapt_layout, load_checkpoint, load_weights
from segcli.checkpoints.manifest import read_manifest_file, shipped_manifest_path
from segcli.errors import CheckpointError, UnknownNameError
from segcli.models import build_model
from segcli.models.backbones import PaddedInvertedResidual
from model_testing import bn_keys, conv_keys, meta_state, random_image, state_shapes

VOC_CLASSES = 21
RECORD_NAMES = ("deeplabv3-resnet50-voc-os16", "deeplabv3-resnet101-voc-os16", "deeplabv3-mobilenet-voc-os16")
EXPECTED_KWARGS = {
    "deeplabv3-resnet50-voc-os16": ("deeplabv3-resnet50", {"output_stride": 16}),
    "deeplabv3-resnet101-voc-os16": ("deeplabv3-resnet101", {"output_stride": 16}),
    "deeplabv3-mobilenet-voc-os16": ("deeplabv3-mobilenet", {"backbone": "mobilenet_v2", "output_stride": 16}),
}


def _records() -> dict[str, object]:
    return {record.name: record for record in read_manifest_file(shipped_manifest_path())}


# --------------------------------------------------------------------------- the published layout, written out


def dlpt_v3_head_keys(high_channels: int, classes: int) -> dict[str, tuple[int, ...]]:
    """DeepLabV3Plus-Pytorch's ``DeepLabHead``: ``classifier.classifier`` = ASPP, 3x3 conv, BN, ReLU, 1x1."""
    head = "classifier.classifier"
    keys = conv_keys(f"{head}.0.convs.0.0", 256, high_channels, 1) | bn_keys(f"{head}.0.convs.0.1", 256)
    for branch in (1, 2, 3):
        keys |= conv_keys(f"{head}.0.convs.{branch}.0", 256, high_channels, 3) | bn_keys(f"{head}.0.convs.{branch}.1", 256)
    keys |= conv_keys(f"{head}.0.convs.4.1", 256, high_channels, 1) | bn_keys(f"{head}.0.convs.4.2", 256)  # 0: pooling
    keys |= conv_keys(f"{head}.0.project.0", 256, 1280, 1) | bn_keys(f"{head}.0.project.1", 256)
    keys |= conv_keys(f"{head}.1", 256, 256, 3) | bn_keys(f"{head}.2", 256)
    keys |= {f"{head}.4.weight": (classes, 256, 1, 1), f"{head}.4.bias": (classes,)}
    return keys


def dlpt_backbone_keys(model_name: str) -> dict[str, tuple[int, ...]]:
    """The backbone keys of the published file, from torchvision's own ResNet / MobileNetV2."""
    with torch.device("meta"):
        if model_name == "deeplabv3-mobilenet":
            features = torchvision.models.mobilenet_v2(weights=None).features
        else:
            builder = torchvision.models.resnet50 if model_name.endswith("50") else torchvision.models.resnet101
            resnet = builder(weights=None)
    if model_name != "deeplabv3-mobilenet":
        return {f"backbone.{key}": shape for key, shape in state_shapes(resnet).items() if not key.startswith("fc.")}
    keys = {}
    for key, shape in state_shapes(features).items():  # features[0:4] low, [4:18] high, indices kept
        index = int(key.split(".", 1)[0])
        if index < 18:
            keys[f"backbone.{'low' if index < 4 else 'high'}_level_features.{key}"] = shape
    return keys


# representative keys written by hand from the published files' layout
HAND_WRITTEN_SAMPLES = {
    "deeplabv3-resnet50": {
        "backbone.conv1.weight": (64, 3, 7, 7),
        "backbone.layer3.5.bn3.weight": (1024,),
        "backbone.layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "classifier.classifier.0.convs.0.0.weight": (256, 2048, 1, 1),
        "classifier.classifier.0.convs.3.0.weight": (256, 2048, 3, 3),
        "classifier.classifier.0.convs.4.1.weight": (256, 2048, 1, 1),
        "classifier.classifier.0.project.0.weight": (256, 1280, 1, 1),
        "classifier.classifier.1.weight": (256, 256, 3, 3),
        "classifier.classifier.2.running_var": (256,),
        "classifier.classifier.4.weight": (21, 256, 1, 1),
        "classifier.classifier.4.bias": (21,),
    },
    "deeplabv3-resnet101": {
        "backbone.layer3.22.conv3.weight": (1024, 256, 1, 1),
        "classifier.classifier.0.convs.1.0.weight": (256, 2048, 3, 3),
        "classifier.classifier.4.weight": (21, 256, 1, 1),
    },
    "deeplabv3-mobilenet": {
        "backbone.low_level_features.0.0.weight": (32, 3, 3, 3),
        "backbone.low_level_features.3.conv.2.weight": (24, 144, 1, 1),
        "backbone.high_level_features.4.conv.0.0.weight": (144, 24, 1, 1),
        "backbone.high_level_features.17.conv.2.weight": (320, 960, 1, 1),
        "classifier.classifier.0.convs.0.0.weight": (256, 320, 1, 1),
        "classifier.classifier.0.convs.4.1.weight": (256, 320, 1, 1),
        "classifier.classifier.4.weight": (21, 256, 1, 1),
    },
}


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_manifest_record_builds_a_model_that_takes_the_whole_published_key_set(record_name) -> None:
    record = _records()[record_name]
    model_name, kwargs = EXPECTED_KWARGS[record_name]
    assert (record.model, record.kwargs, record.layout) == (model_name, kwargs, "deeplabv3plus-pytorch")
    high_channels = 320 if model_name == "deeplabv3-mobilenet" else 2048
    published = dlpt_backbone_keys(model_name) | dlpt_v3_head_keys(high_channels, record.num_classes)
    sample = HAND_WRITTEN_SAMPLES[model_name]
    assert {key: published.get(key) for key in sample} == sample
    with torch.device("meta"):
        model = build_model(record.model, record.num_classes, **record.kwargs)
    file_object = {"model_state": meta_state(published), "cur_itrs": 30000, "best_score": 0.77}
    adapted = adapt_layout(file_object, record.layout, set(model.state_dict()))
    assert any("classifier.classifier.* -> classifier.*" in note for note in adapted.notes)
    renamed = {key: tuple(value.shape) for key, value in adapted.state_dict.items()}
    assert renamed == state_shapes(model)  # every key renamed or kept, none lost, none left over
    assert {key for key in renamed if key.startswith("classifier.")} == {
        key.replace("classifier.classifier.", "classifier.", 1) for key in published if key.startswith("classifier.")}
    model.load_state_dict(adapted.state_dict, strict=True, assign=True)


def test_mobilenet_v2_file_does_not_fit_the_default_mobilenet_v3_model() -> None:
    published = dlpt_backbone_keys("deeplabv3-mobilenet") | dlpt_v3_head_keys(320, VOC_CLASSES)
    with torch.device("meta"):
        model = build_model("deeplabv3-mobilenet", VOC_CLASSES)  # MobileNetV3-Large, torchvision
    adapted = adapt_layout({"model_state": meta_state(published)}, "deeplabv3plus-pytorch", set(model.state_dict()))
    with pytest.raises(CheckpointError, match="missing keys.*unexpected"):
        load_weights(model, adapted.state_dict, "best_deeplabv3_mobilenet_voc_os16.pth", "deeplabv3-mobilenet")


# --------------------------------------------------------------------------- a small file, loaded and run


def _published_file_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random weights in the published naming (head under ``classifier.classifier``), sane scales."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            tensor = torch.tensor(30000)
        elif key.endswith("running_var") or (value.ndim == 1 and key.endswith("weight")):
            tensor = 0.5 + torch.rand(value.shape, generator=generator)
        elif value.ndim == 1:  # BN bias / running mean, conv bias
            tensor = 0.1 * torch.randn(value.shape, generator=generator)
        else:
            fan_in = value[0].numel()
            tensor = torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        name = key.replace("classifier.", "classifier.classifier.", 1) if key.startswith("classifier.") else key
        state[name] = tensor
    return state


def _batch_norm(x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                        state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)


def hand_wired_v3_head(high: torch.Tensor, state: dict[str, torch.Tensor], rates: tuple[int, int, int],
                       size: tuple[int, int]) -> torch.Tensor:
    """ASPP -> 3x3 conv/BN/ReLU -> 1x1 -> bilinear upsampling, from the file's tensors only."""
    head = "classifier.classifier"

    def conv_bn_relu(x: torch.Tensor, prefix: str, conv: str, bn: str, dilation: int = 1) -> torch.Tensor:
        weight = state[f"{prefix}.{conv}.weight"]
        padding = dilation if weight.shape[-1] == 3 else 0
        return F.relu(_batch_norm(F.conv2d(x, weight, padding=padding, dilation=dilation), state, f"{prefix}.{bn}"))

    branches = [conv_bn_relu(high, f"{head}.0.convs.0", "0", "1")]
    branches += [conv_bn_relu(high, f"{head}.0.convs.{i}", "0", "1", rate) for i, rate in enumerate(rates, start=1)]
    pooled = conv_bn_relu(high.mean(dim=(2, 3), keepdim=True), f"{head}.0.convs.4", "1", "2")
    branches.append(pooled.expand(-1, -1, *high.shape[-2:]))
    context = conv_bn_relu(torch.cat(branches, dim=1), f"{head}.0.project", "0", "1")
    hidden = conv_bn_relu(context, head, "1", "2")
    logits = F.conv2d(hidden, state[f"{head}.4.weight"], state[f"{head}.4.bias"])
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


SMALL_VARIANTS = [
    # record, extra builder options that shrink it, output stride
    ("deeplabv3-resnet50-voc-os16", {"width": 0.125}, 16),
    ("deeplabv3-mobilenet-voc-os16", {"width_mult": 0.5}, 16),
    ("deeplabv3-mobilenet-voc-os16", {"width_mult": 0.5, "output_stride": 8}, 8),
]


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 128])  # at 128 px the os16 features are 8x8: rates 6 and 12 differ
@pytest.mark.parametrize(("record_name", "small", "output_stride"), SMALL_VARIANTS)
def test_published_file_loads_strictly_and_matches_a_hand_wired_forward(tmp_path, record_name, small,
                                                                         output_stride, size) -> None:
    record = _records()[record_name]
    kwargs = record.kwargs | small
    torch.manual_seed(0)
    source = build_model(record.model, 4, **kwargs)
    state = _published_file_state(source, seed=1)
    path = tmp_path / record.filename
    torch.save({"cur_itrs": 30000, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []},
                "scheduler_state": {"last_epoch": 30000}, "best_score": np.float64(0.769)}, path)

    torch.manual_seed(2)  # different random init: only the file can make the outputs agree
    model = build_model(record.model, 4, **kwargs)
    notes = load_checkpoint(model, path, record.layout, model_name=record.model)
    assert any("model_state" in note for note in notes)
    assert any("classifier.classifier.* -> classifier.*" in note for note in notes)
    model.eval()

    image = random_image(size, seed=3)
    backbone = model.backbone
    with torch.no_grad():
        if "resnet" in record.model:
            x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(image))))
            high = backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(x))))
        else:
            high = backbone.high_level_features(backbone.low_level_features(image))
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        expected = hand_wired_v3_head(high, state, rates, (size, size))
        # fp32 through ResNet-50 and the ASPP head: the module path and the hand-wired F.conv2d/batch_norm path
        # round differently on some CPUs (seen: 2.6e-4 on logits of magnitude ~2 on an AVX2 Xeon); a layout
        # error moves logits by O(1), far outside this bound
        torch.testing.assert_close(model(image), expected, rtol=1e-3, atol=1e-3)
        low_res = model.low_res_logits(image)
    assert low_res.shape[-1] == high.shape[-1]
    if "resnet" in record.model:
        assert high.shape[-1] == size // output_stride


# --------------------------------------------------------------------------- strides, dilations, rates


def _conv_geometry(module: torch.nn.Module) -> dict[str, tuple[int, int, int]]:
    return {name: (conv.stride[0], conv.dilation[0], conv.padding[0])
            for name, conv in module.named_modules() if isinstance(conv, torch.nn.Conv2d)}


@pytest.mark.parametrize(("output_stride", "dilated", "rates"),
                         [(16, [False, False, True], (6, 12, 18)), (8, [False, True, True], (12, 24, 36))])
@pytest.mark.parametrize("depth", [50, 101])
def test_resnet_output_stride_sets_dilation_and_aspp_rates_like_torchvision(depth, output_stride, dilated,
                                                                              rates) -> None:
    builder = torchvision.models.resnet50 if depth == 50 else torchvision.models.resnet101
    with torch.device("meta"):
        reference = builder(weights=None, replace_stride_with_dilation=dilated)
        model = build_model(f"deeplabv3-resnet{depth}", VOC_CLASSES, output_stride=output_stride)
    expected = {name: geometry for name, geometry in _conv_geometry(reference).items() if not name.startswith("fc")}
    assert _conv_geometry(model.backbone) == expected
    aspp = model.classifier[0]
    assert tuple(aspp.convs[i][0].dilation[0] for i in (1, 2, 3)) == rates
    assert tuple(aspp.convs[i][0].padding[0] for i in (1, 2, 3)) == rates
    layer3_dilations = {block.conv2.dilation[0] for block in model.backbone.layer3}
    layer4_dilations = [block.conv2.dilation[0] for block in model.backbone.layer4]
    if output_stride == 16:  # only layer4 trades its stride; its first block keeps dilation 1
        assert layer3_dilations == {1} and model.backbone.layer3[0].conv2.stride == (2, 2)
        assert layer4_dilations == [1, 2, 2] and model.backbone.layer4[0].conv2.stride == (1, 1)
    else:
        assert layer3_dilations == {1, 2} and layer4_dilations == [2, 4, 4]


@pytest.mark.parametrize("name", ["deeplabv3-resnet50", "deeplabv3-resnet101"])
def test_default_resnet_build_is_torchvision_and_os16_keeps_its_keys(name) -> None:
    with torch.device("meta"):
        default = build_model(name, VOC_CLASSES, aux=True)
        stride8 = build_model(name, VOC_CLASSES, aux=True, output_stride=8)
        stride16 = build_model(name, VOC_CLASSES, aux=True, output_stride=16)
    assert state_shapes(default) == state_shapes(stride8) == state_shapes(stride16)
    assert _conv_geometry(default) == _conv_geometry(stride8) != _conv_geometry(stride16)
    assert tuple(default.classifier[0].convs[i][0].dilation[0] for i in (1, 2, 3)) == (12, 24, 36)
    assert default.classifier[0].project[3].p == 0.5  # torchvision's ASPP dropout


def _backbone_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: shape for key, shape in state_shapes(model).items() if key.startswith("backbone.")}


@pytest.mark.slow
@pytest.mark.parametrize(("output_stride", "rates"), [(16, (6, 12, 18)), (8, (12, 24, 36))])
def test_mobilenet_v2_backbone_is_the_v3plus_one_and_runs_both_stages(output_stride, rates) -> None:
    options = {"backbone": "mobilenet_v2", "output_stride": output_stride}
    with torch.device("meta"):
        v3 = build_model("deeplabv3-mobilenet", VOC_CLASSES, **options)
        v3plus = build_model("deeplabv3p-mobilenet", VOC_CLASSES, output_stride=output_stride)
    assert _backbone_shapes(v3) == _backbone_shapes(v3plus)
    assert _conv_geometry(v3.backbone) == _conv_geometry(v3plus.backbone)
    assert list(dict(v3.backbone.named_children())) == ["low_level_features", "high_level_features"]
    assert all(isinstance(block, PaddedInvertedResidual) for block in v3.backbone.high_level_features)
    aspp = v3.classifier[0]
    assert tuple(aspp.convs[i][0].dilation[0] for i in (1, 2, 3)) == rates
    assert aspp.project[3].p == 0.1  # DeepLabV3Plus-Pytorch's ASPP dropout
    assert v3.aux_classifier is None

    torch.manual_seed(0)
    small = build_model("deeplabv3-mobilenet", 3, width_mult=0.5, **options).eval()
    with torch.no_grad():
        features = small.backbone(random_image(64))
        direct = small.backbone.high_level_features(small.backbone.low_level_features(random_image(64)))
    assert list(features) == ["out"]
    torch.testing.assert_close(features["out"], direct)
    assert features["out"].shape[-1] == 64 // output_stride  # unpadded stem: 64 -> 31 -> 16 -> 8 -> 4


@pytest.mark.parametrize(("options", "message"), [
    ({"output_stride": 8}, "output_stride 8 needs backbone 'mobilenet_v2'"),
    ({"backbone": "mobilenet_v2", "aux": True}, "aux=True needs backbone 'mobilenet_v3_large'"),
    ({"backbone": "resnet50"}, "backbone must be one of mobilenet_v3_large, mobilenet_v2"),
    ({"backbone": "mobilenet_v2", "output_stride": 32}, "output_stride must be one of 16, 8"),
])
def test_mobilenet_option_errors_say_what_to_use(options, message) -> None:
    with pytest.raises(UnknownNameError, match=message):
        build_model("deeplabv3-mobilenet", VOC_CLASSES, **options)


def test_resnet_output_stride_outside_8_and_16_is_refused() -> None:
    with pytest.raises(UnknownNameError, match="output_stride must be one of 16, 8, got 32"):
        build_model("deeplabv3-resnet50", VOC_CLASSES, output_stride=32, width=0.125)
