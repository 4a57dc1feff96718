"""Published-layout compatibility of the zoo, checked against torchvision and hand-written key lists.

torchvision models are built here with random weights (never downloaded) and their state dicts
loaded into the segcli models with strict key checking; the ResNet-101 variants are compared by
keys and shapes only (on the meta device), for time.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.nn import functional as F
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    fcn_resnet50,
    fcn_resnet101,
    lraspp_mobilenet_v3_large,
)

from segcli.models import build_model
from segcli.models.backbones import ScaledResNet
from model_testing import (
    assert_keys_with_shapes,
    bn_keys,
    conv_keys,
    meta_state,
    random_image,
    randomize_batchnorm_stats,
    state_shapes,
)

VOC_CLASSES = 21

# --------------------------------------------------------------------------- torchvision layouts

TORCHVISION_PAIRS = [
    # segcli name, torchvision builder, aux head in the published file
    ("fcn-resnet50", fcn_resnet50, True),
    ("deeplabv3-resnet50", deeplabv3_resnet50, True),
    ("deeplabv3-mobilenet", deeplabv3_mobilenet_v3_large, True),
    ("lraspp", lraspp_mobilenet_v3_large, False),
]


def _torchvision_reference(builder, aux: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"aux_loss": True} if aux else {}
    reference = builder(weights=None, weights_backbone=None, num_classes=VOC_CLASSES, **options)
    randomize_batchnorm_stats(reference, seed=1)
    return reference.eval()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "builder", "aux"), TORCHVISION_PAIRS)
def test_torchvision_state_dict_loads_strictly_and_gives_the_same_logits(name, builder, aux) -> None:
    reference = _torchvision_reference(builder, aux)
    with torch.device("meta"):  # no init cost: every tensor comes from the state dict
        model = build_model(name, VOC_CLASSES, **({"aux": True} if aux else {}))
    model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    model.eval()
    image = random_image(64, seed=2)
    with torch.no_grad():
        expected = reference(image)
        torch.testing.assert_close(model(image), expected["out"])
        if aux:
            _, aux_logits = model.logits_and_aux(image)
            torch.testing.assert_close(aux_logits, expected["aux"])
    if aux:  # a model without the aux head takes the file minus its training-only aux_classifier.*
        state = {k: v for k, v in reference.state_dict().items() if not k.startswith("aux_classifier.")}
        with torch.device("meta"):
            plain = build_model(name, VOC_CLASSES)
        plain.load_state_dict(state, strict=True, assign=True)
        with torch.no_grad():
            torch.testing.assert_close(plain.eval()(image), expected["out"])


@pytest.mark.parametrize(("name", "builder"), [("fcn-resnet101", fcn_resnet101), ("deeplabv3-resnet101", deeplabv3_resnet101)])
def test_resnet101_variants_have_torchvision_keys_and_shapes(name, builder) -> None:
    with torch.device("meta"):  # shapes only
        reference = builder(weights=None, weights_backbone=None, num_classes=VOC_CLASSES, aux_loss=True)
        model = build_model(name, VOC_CLASSES, aux=True)
    assert state_shapes(model) == state_shapes(reference)
    model.load_state_dict(reference.state_dict(), strict=True)


def test_scaled_resnet_at_full_width_equals_torchvision_resnet50() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    randomize_batchnorm_stats(reference, seed=4)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    scaled = ScaledResNet((3, 4, 6, 3), 1.0, (False, True, True))
    scaled.load_state_dict(state, strict=True)
    image = random_image(32, seed=5)
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(reference.children())[:-2]).eval()
        torch.testing.assert_close(scaled.eval()(image), trunk(image))


# --------------------------------------------------------------------------- DeepLabV3+ (VainF/DeepLabV3Plus-Pytorch's network code)


def v3plus_head_keys(high_channels: int, low_channels: int, classes: int) -> dict[str, tuple[int, ...]]:
    """The whole ``classifier.*`` layout of DeepLabV3Plus-Pytorch's head, written out."""
    keys: dict[str, tuple[int, ...]] = {}
    keys |= conv_keys("classifier.project.0", 48, low_channels, 1)
    keys |= bn_keys("classifier.project.1", 48)
    keys |= conv_keys("classifier.aspp.convs.0.0", 256, high_channels, 1)
    keys |= bn_keys("classifier.aspp.convs.0.1", 256)
    for branch in (1, 2, 3):
        keys |= conv_keys(f"classifier.aspp.convs.{branch}.0", 256, high_channels, 3)
        keys |= bn_keys(f"classifier.aspp.convs.{branch}.1", 256)
    keys |= conv_keys("classifier.aspp.convs.4.1", 256, high_channels, 1)  # index 0 is the pooling
    keys |= bn_keys("classifier.aspp.convs.4.2", 256)
    keys |= conv_keys("classifier.aspp.project.0", 256, 1280, 1)
    keys |= bn_keys("classifier.aspp.project.1", 256)
    keys |= conv_keys("classifier.classifier.0", 256, 304, 3)
    keys |= bn_keys("classifier.classifier.1", 256)
    keys |= {"classifier.classifier.3.weight": (classes, 256, 1, 1), "classifier.classifier.3.bias": (classes,)}
    return keys


RESNET50_BACKBONE_SAMPLE = {
    "backbone.conv1.weight": (64, 3, 7, 7),
    "backbone.bn1.running_var": (64,),
    "backbone.layer1.0.conv1.weight": (64, 64, 1, 1),
    "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "backbone.layer1.2.conv3.weight": (256, 64, 1, 1),
    "backbone.layer2.3.conv2.weight": (128, 128, 3, 3),
    "backbone.layer3.5.bn3.weight": (1024,),
    "backbone.layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
    "backbone.layer4.2.conv3.weight": (2048, 512, 1, 1),
}

MOBILENET_V2_BACKBONE_SAMPLE = {
    "backbone.low_level_features.0.0.weight": (32, 3, 3, 3),
    "backbone.low_level_features.0.1.running_mean": (32,),
    "backbone.low_level_features.1.conv.0.0.weight": (32, 1, 3, 3),  # t=1: depthwise first
    "backbone.low_level_features.1.conv.1.weight": (16, 32, 1, 1),
    "backbone.low_level_features.3.conv.2.weight": (24, 144, 1, 1),
    # slicing an nn.Sequential keeps the original indices: the high level starts at 4
    "backbone.high_level_features.4.conv.0.0.weight": (144, 24, 1, 1),
    "backbone.high_level_features.4.conv.1.0.weight": (144, 1, 3, 3),
    "backbone.high_level_features.17.conv.2.weight": (320, 960, 1, 1),
    "backbone.high_level_features.17.conv.3.running_var": (320,),
}


def test_deeplabv3plus_resnet50_layout() -> None:
    with torch.device("meta"):
        model = build_model("deeplabv3p-resnet50", VOC_CLASSES)
        resnet = torchvision.models.resnet50(weights=None)
    head = v3plus_head_keys(2048, 256, VOC_CLASSES)
    assert_keys_with_shapes(model, RESNET50_BACKBONE_SAMPLE | head)
    shapes = state_shapes(model)
    assert {k: v for k, v in shapes.items() if k.startswith("classifier.")} == head
    # the backbone is torchvision's ResNet-50 without avgpool/fc, key for key
    expected_backbone = {f"backbone.{k}": v for k, v in state_shapes(resnet).items() if not k.startswith("fc.")}
    assert {k: v for k, v in shapes.items() if k.startswith("backbone.")} == expected_backbone
    model.load_state_dict(meta_state(expected_backbone | head), strict=True)


def test_deeplabv3plus_mobilenet_layout() -> None:
    with torch.device("meta"):
        model = build_model("deeplabv3p-mobilenet", VOC_CLASSES)
        mobilenet = torchvision.models.mobilenet_v2(weights=None)
    head = v3plus_head_keys(320, 24, VOC_CLASSES)
    assert_keys_with_shapes(model, MOBILENET_V2_BACKBONE_SAMPLE | head)
    shapes = state_shapes(model)
    assert {k: v for k, v in shapes.items() if k.startswith("classifier.")} == head
    # features[0:4] -> low_level_features, features[4:18] -> high_level_features, indices kept
    # (the last 1x1 conv, features[18], is dropped)
    expected_backbone = {}
    for key, shape in state_shapes(mobilenet.features).items():
        index = int(key.split(".", 1)[0])
        if index < 4:
            expected_backbone[f"backbone.low_level_features.{key}"] = shape
        elif index < 18:
            expected_backbone[f"backbone.high_level_features.{key}"] = shape
    assert {k: v for k, v in shapes.items() if k.startswith("backbone.")} == expected_backbone
    model.load_state_dict(meta_state(expected_backbone | head), strict=True)


@pytest.mark.parametrize(("output_stride", "rates"), [(16, (6, 12, 18)), (8, (12, 24, 36))])
@pytest.mark.parametrize("name", ["deeplabv3p-resnet50", "deeplabv3p-mobilenet"])
def test_deeplabv3plus_output_stride_sets_aspp_rates_and_feature_stride(name, output_stride, rates) -> None:
    torch.manual_seed(0)
    options = {"width": 0.125} if "resnet" in name else {"width_mult": 0.5}
    model = build_model(name, 3, output_stride=output_stride, **options).eval()
    dilations = tuple(model.classifier.aspp.convs[i][0].dilation[0] for i in (1, 2, 3))
    assert dilations == rates
    with torch.no_grad():
        features = model.backbone(random_image(64))
    assert features["out"].shape[-1] == 64 // output_stride
    assert features["low_level"].shape[-1] == 16  # stride 4


# (stride, dilation) of the depthwise conv in features[4..17], worked out from the published rule:
# once the running stride reaches output_stride, a group's stride s becomes dilation *= s, and the
# first block of that group keeps the previous dilation.
MOBILENET_HIGH_LEVEL_STRIDE_DILATION = {
    16: [(2, 1), (1, 1), (1, 1), (2, 1), (1, 1), (1, 1), (1, 1),
         (1, 1), (1, 1), (1, 1), (1, 1), (1, 2), (1, 2), (1, 2)],
    8: [(2, 1), (1, 1), (1, 1), (1, 1), (1, 2), (1, 2), (1, 2),
        (1, 2), (1, 2), (1, 2), (1, 2), (1, 4), (1, 4), (1, 4)],
}


@pytest.mark.parametrize("output_stride", [16, 8])
def test_mobilenet_strides_and_dilations_follow_the_published_rule(output_stride) -> None:
    model = build_model("deeplabv3p-mobilenet", 3, output_stride=output_stride, width_mult=0.5)
    depthwise = [block.conv[-3][0] for block in model.backbone.high_level_features]
    got = [(conv.stride[0], conv.dilation[0]) for conv in depthwise]
    assert got == MOBILENET_HIGH_LEVEL_STRIDE_DILATION[output_stride]
    assert all(conv.padding == (0, 0) for conv in depthwise)  # the block pads its input instead
    assert [block.padding[0] for block in model.backbone.high_level_features] == [d for _, d in got]
    stem = model.backbone.low_level_features[0]
    assert stem[0].padding == (0, 0)  # the published stem conv is unpadded: 64 px -> 31 px
    assert stem(random_image(64)).shape[-1] == 31


@pytest.mark.parametrize("name", ["deeplabv3p-resnet50", "deeplabv3p-mobilenet"])
def test_deeplabv3plus_forward_matches_a_hand_wired_head(name) -> None:
    torch.manual_seed(0)
    options = {"width": 0.125} if "resnet" in name else {"width_mult": 0.5}
    model = build_model(name, 4, **options)
    randomize_batchnorm_stats(model, seed=6)
    model.eval()
    image = random_image(64, seed=7)
    backbone, head = model.backbone, model.classifier
    with torch.no_grad():
        if "resnet" in name:
            low = backbone.layer1(backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(image)))))
            high = backbone.layer4(backbone.layer3(backbone.layer2(low)))
        else:
            low = backbone.low_level_features(image)
            high = backbone.high_level_features(low)
        projected = head.project(low)
        branches = [head.aspp.convs[i](high) for i in range(4)]
        pooling = head.aspp.convs[4]
        pooled = pooling[3](pooling[2](pooling[1](high.mean(dim=(2, 3), keepdim=True))))
        branches.append(pooled.expand(-1, -1, *high.shape[-2:]))
        context = head.aspp.project(torch.cat(branches, dim=1))
        context = F.interpolate(context, size=projected.shape[-2:], mode="bilinear", align_corners=False)
        logits = head.classifier(torch.cat([projected, context], dim=1))
        expected = F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(image), expected)
    assert model.classifier.aspp.project[3].p == 0.1


# --------------------------------------------------------------------------- FCN-VGG (wkentaro/pytorch-fcn's models)


def vgg16_keys() -> dict[str, tuple[int, ...]]:
    layers = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
              ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
              ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
              ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)]
    keys: dict[str, tuple[int, ...]] = {}
    for name, cin, cout in layers:
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (cout, cin, 3, 3), (cout,)
    keys |= {"fc6.weight": (4096, 512, 7, 7), "fc6.bias": (4096,),
             "fc7.weight": (4096, 4096, 1, 1), "fc7.bias": (4096,),
             "score_fr.weight": (VOC_CLASSES, 4096, 1, 1), "score_fr.bias": (VOC_CLASSES,)}
    return keys


C = VOC_CLASSES
FCN_LAYOUTS = {
    "fcn32s": {"upscore.weight": (C, C, 64, 64)},
    "fcn16s": {"score_pool4.weight": (C, 512, 1, 1), "score_pool4.bias": (C,),
               "upscore2.weight": (C, C, 4, 4), "upscore16.weight": (C, C, 32, 32)},
    "fcn8s": {"score_pool3.weight": (C, 256, 1, 1), "score_pool3.bias": (C,),
              "score_pool4.weight": (C, 512, 1, 1), "score_pool4.bias": (C,),
              "upscore2.weight": (C, C, 4, 4), "upscore_pool4.weight": (C, C, 4, 4),
              "upscore8.weight": (C, C, 16, 16)},
}


@pytest.mark.parametrize("name", list(FCN_LAYOUTS))
def test_fcn_vgg_has_exactly_the_pytorch_fcn_layout(name) -> None:
    expected = vgg16_keys() | FCN_LAYOUTS[name]
    with torch.device("meta"):
        model = build_model(name, VOC_CLASSES)
    assert state_shapes(model) == expected
    model.load_state_dict(meta_state(expected), strict=True)
    assert model.conv1_1.padding == (100, 100)
    assert all(layer.bias is None for key, layer in model.named_children() if key.startswith("upscore"))


@pytest.mark.parametrize("name", list(FCN_LAYOUTS))
def test_fcn_vgg_upscore_layers_start_as_bilinear_upsampling(name) -> None:
    model = build_model(name, 3, width=0.0625)
    for key, layer in model.named_children():
        if not key.startswith("upscore"):
            continue
        weight = layer.weight.detach()
        stride, kernel = layer.stride[0], layer.kernel_size[0]
        assert kernel == 2 * stride
        off_diagonal = weight.clone()
        off_diagonal[range(3), range(3)] = 0
        assert off_diagonal.abs().max() == 0
        # the 1-d profile of a bilinear kernel of size 2s: (2i + 1) / (2s) rising, then falling
        rising = torch.tensor([(2 * i + 1) / (2 * stride) for i in range(stride)])
        profile = torch.cat([rising, rising.flip(0)])
        torch.testing.assert_close(weight[1, 1], profile[:, None] * profile[None, :])
        # a linear ramp is upsampled to a linear ramp (away from the borders)
        ramp = torch.arange(6, dtype=torch.float32).repeat(6, 1)[None, None].repeat(1, 3, 1, 1)
        with torch.no_grad():
            upsampled = layer(ramp)[0, 0, kernel:-kernel, kernel:-kernel]
        steps = upsampled[:, 1:] - upsampled[:, :-1]
        torch.testing.assert_close(steps, torch.full_like(steps, 1 / stride))


@pytest.mark.parametrize("name", list(FCN_LAYOUTS))
def test_fcn_vgg_output_is_input_sized(name) -> None:
    torch.manual_seed(0)
    model = build_model(name, 3, width=0.0625).eval()
    with torch.no_grad():
        assert model(random_image(64)).shape == (1, 3, 64, 64)
        assert model(torch.randn(1, 3, 33, 47)).shape == (1, 3, 33, 47)


def test_fcn8s_fuses_unscaled_skips_with_the_published_offsets() -> None:
    torch.manual_seed(0)
    model = build_model("fcn8s", 3, width=0.0625).eval()
    for layer in (model.score_pool3, model.score_pool4):  # zero at init: give the skips a voice
        torch.nn.init.normal_(layer.weight, std=0.1)
    image = random_image(64, seed=8)
    with torch.no_grad():
        x, pools = image, []
        for stage in (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1", "conv3_2", "conv3_3"),
                      ("conv4_1", "conv4_2", "conv4_3"), ("conv5_1", "conv5_2", "conv5_3")):
            for conv in stage:
                x = F.relu(getattr(model, conv)(x))
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            pools.append(x)
        score = model.score_fr(F.relu(model.fc7(F.relu(model.fc6(x)))))
        up2 = model.upscore2(score)
        h = up2 + model.score_pool4(pools[3])[:, :, 5:5 + up2.shape[2], 5:5 + up2.shape[3]]
        up4 = model.upscore_pool4(h)
        h = up4 + model.score_pool3(pools[2])[:, :, 9:9 + up4.shape[2], 9:9 + up4.shape[3]]
        expected = model.upscore8(h)[:, :, 31:31 + 64, 31:31 + 64]
        torch.testing.assert_close(model(image), expected)
