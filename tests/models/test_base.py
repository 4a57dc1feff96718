"""The zoo's one forward (segcli/models/base.py): upsample(low_res_logits), multi-scale fusion, FCN geometry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import segcli
from segcli.models import MODEL_NAMES, build_model
from segcli.models.base import SegmentationModel, bilinear_kernel, set_input_scales
from model_testing import SMALL_OPTIONS, random_image


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_zoo_model_shares_the_one_forward(name) -> None:
    with torch.device("meta"):
        model = build_model(name, 3, **SMALL_OPTIONS[name])
    assert isinstance(model, SegmentationModel)
    assert type(model).forward is SegmentationModel.forward


def test_one_bilinear_kernel_in_the_code_base() -> None:
    root = Path(segcli.__file__).parent
    definitions = [path for path in root.rglob("*.py") if "def bilinear_kernel(" in path.read_text()]
    assert definitions == [root / "models" / "base.py"]


def test_fcn_upscore_layers_start_as_the_shared_bilinear_kernel() -> None:
    model = build_model("fcn8s", 3, width=0.0625)
    for layer, factor in ((model.upscore2, 2), (model.upscore_pool4, 2), (model.upscore8, 8)):
        weight = layer.weight.detach()
        assert weight.shape == (3, 3, 2 * factor, 2 * factor)
        for channel in range(3):
            torch.testing.assert_close(weight[channel, channel], bilinear_kernel(1, factor)[0, 0])
            assert weight[channel, (channel + 1) % 3].abs().sum() == 0


@pytest.mark.parametrize(("name", "geometry"), [("fcn32s", (32, 19)), ("fcn16s", (16, 27)), ("fcn8s", (8, 31)),
                                                ("deeplabv2", None), ("lraspp", None)])
def test_models_expose_their_final_upsampling_geometry(name, geometry) -> None:
    with torch.device("meta"):
        model = build_model(name, 3, **SMALL_OPTIONS[name])
    assert model.logit_geometry() == geometry


def test_fcn_forward_crops_at_the_offset_it_exposes() -> None:
    torch.manual_seed(0)
    model = build_model("fcn16s", 3, width=0.0625).eval()
    image = random_image(40, seed=2)
    factor, offset = model.logit_geometry()
    with torch.no_grad():
        full = model.upscore16(model.low_res_logits(image))
        torch.testing.assert_close(model(image), full[..., offset:offset + 40, offset:offset + 40])
    assert model.upscore16.stride == (factor, factor)


def _max_fused(model, x, scales):
    logits = model.low_res_logits(x)
    fused = logits
    for scale in scales:
        if scale != 1.0:
            scaled = model.low_res_logits(F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False))
            fused = torch.maximum(fused, F.interpolate(scaled, size=logits.shape[-2:], mode="bilinear",
                                                       align_corners=False))
    return F.interpolate(fused, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deeplabv2", "deeplabv3p-mobilenet"])
def test_input_scales_max_fuse_the_logits_of_each_scale(name) -> None:
    torch.manual_seed(0)
    model = build_model(name, 4, **SMALL_OPTIONS[name]).eval()
    image = random_image(64, seed=3)
    with torch.no_grad():
        single = model(image)
        set_input_scales(model, (0.5, 0.75, 1.0))
        fused = model(image)
        torch.testing.assert_close(fused, _max_fused(model, image, (0.5, 0.75)))
    assert (fused >= single - 1e-5).all() and (fused > single + 1e-3).any()


@pytest.mark.parametrize(("scales", "message"), [((0.5, 0.75), "must include 1.0"), ((1.0, 0.0), "must be > 0"),
                                                 ((), "must include 1.0")])
def test_bad_input_scales_are_refused(scales, message) -> None:
    model = build_model("deeplabv1", 2, width=0.0625)
    with pytest.raises(ValueError, match=message):
        set_input_scales(model, scales)
