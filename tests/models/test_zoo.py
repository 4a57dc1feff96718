"""Every zoo model builds, runs at 64x64 and honours the model contract."""

from __future__ import annotations

import pytest
import torch

from segcli.errors import UnknownNameError
from segcli.models import MODEL_NAMES, build_model
from segcli.models.base import upsample_logits
from model_testing import SMALL_OPTIONS, random_image

NUM_CLASSES = 5


def test_small_options_cover_the_zoo() -> None:
    assert set(SMALL_OPTIONS) == set(MODEL_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_gives_finite_logits_at_input_size(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, **SMALL_OPTIONS[name]).eval()
    image = random_image(64)
    with torch.no_grad():
        logits = model(image)
        low_res = model.low_res_logits(image)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (1, NUM_CLASSES, 64, 64)
    assert torch.isfinite(logits).all()
    assert low_res.shape[:2] == (1, NUM_CLASSES)
    assert low_res.shape[2] < 64 and low_res.shape[3] < 64
    assert logits.std() > 0  # not a constant map


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_non_square_input_keeps_its_size(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 3, **SMALL_OPTIONS[name]).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 40, 56))
    assert logits.shape == (1, 3, 40, 56)


@pytest.mark.parametrize(
    ("name", "align_corners"),
    [("deeplabv1", True), ("deeplabv2", False), ("deeplabv3-mobilenet", False), ("deeplabv3p-mobilenet", False),
     ("lraspp", False), ("fcn-resnet50", False)],
)
def test_forward_is_bilinear_upsampling_of_low_res_logits(name: str, align_corners: bool) -> None:
    # DeepLab v1 resizes as its published port does (align_corners=True), the others as torchvision
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, **SMALL_OPTIONS[name]).eval()
    image = random_image(48, seed=1)
    with torch.no_grad():
        expected = torch.nn.functional.interpolate(
            model.low_res_logits(image), size=(48, 48), mode="bilinear", align_corners=align_corners
        )
        torch.testing.assert_close(model(image), expected)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unknown_option_is_rejected(name: str) -> None:
    with pytest.raises(UnknownNameError, match="does not take these options"):
        build_model(name, NUM_CLASSES, not_an_option=1)


def test_builders_raise_type_error_on_unknown_keywords() -> None:
    from segcli.models.deeplab_v3plus import deeplabv3plus_mobilenet

    with pytest.raises(TypeError):
        deeplabv3plus_mobilenet(num_classes=2, width=0.5)  # MobileNet takes width_mult, not width


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("deeplabv3p-resnet50", {"output_stride": 32}, "output_stride must be one of 16, 8"),
        ("deeplabv3p-mobilenet", {"output_stride": 4}, "output_stride must be one of 16, 8"),
        ("deeplabv2", {"depth": 34}, "depth must be one of 50, 101"),
        ("fcn8s", {"width": 0}, "width must be a positive number"),
        ("lraspp", {"width_mult": -1.0}, "width_mult must be a positive number"),
    ],
)
def test_bad_option_values_raise_a_segcli_error(name: str, options: dict, message: str) -> None:
    with pytest.raises(UnknownNameError, match=message):
        build_model(name, NUM_CLASSES, **options)


def test_bad_num_classes_is_rejected() -> None:
    with pytest.raises(UnknownNameError, match="num_classes must be a positive integer"):
        build_model("deeplabv1", 0, width=0.125)


def test_alias_builds_the_mobilenet_deeplabv3p() -> None:
    model = build_model("deeplabv3p", 2, width_mult=0.5)
    assert hasattr(model.backbone, "low_level_features")


def test_aux_head_is_optional_and_gives_aux_logits() -> None:
    torch.manual_seed(0)
    plain = build_model("deeplabv3-resnet50", NUM_CLASSES, width=0.125)
    with_aux = build_model("deeplabv3-resnet50", NUM_CLASSES, width=0.125, aux=True).eval()
    assert not any(key.startswith("aux_classifier.") for key in plain.state_dict())
    assert any(key.startswith("aux_classifier.") for key in with_aux.state_dict())
    with torch.no_grad():
        out, aux = with_aux.logits_and_aux(random_image(64))
        torch.testing.assert_close(out, with_aux(random_image(64)))
    assert aux is not None and aux.shape == (1, NUM_CLASSES, 64, 64)


def test_upsample_logits_matches_interpolate() -> None:
    logits = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    result = upsample_logits(logits, (6, 8))
    assert result.shape == (1, 2, 6, 8)
    # align_corners=False: output pixel 0 maps to input -0.25, clamped to the first column
    torch.testing.assert_close(result[0, 0, 0, 0], logits[0, 0, 0, 0])
    # bilinear interpolation of a map that is linear along x stays linear in the interior
    torch.testing.assert_close(result[0, 0, 2, 3] - result[0, 0, 2, 2], torch.tensor(0.5))


@pytest.mark.parametrize(("width", "expected"), [(0.125, 8), (0.25, 16), (1.0, 64)])
def test_resnet_width_scales_the_stem(width: float, expected: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = build_model("fcn-resnet50", 2, width=width)
        caffe = build_model("deeplabv2", 2, width=width, depth=50)
    assert model.backbone.conv1.out_channels == expected
    assert model.backbone.layer4[-1].conv3.out_channels == 32 * expected
    assert caffe.base.layer1.conv1.conv.out_channels == expected
    assert caffe.base.layer5.block3.increase.conv.out_channels == 32 * expected
