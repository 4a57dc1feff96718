"""FCN-32s/16s/8s crop offsets, derived here from the layer arithmetic, against segcli's FCNs.

The nets are those of pytorch-fcn (https://github.com/wkentaro/pytorch-fcn, torchfcn/models/fcn32s.py,
fcn16s.py, fcn8s.py), ports of the Caffe FCNs (Long, Shelhamer, Darrell, "Fully Convolutional Networks
for Semantic Segmentation", CVPR 2015; https://github.com/shelhamer/fcn.berkeleyvision.org). Their crops
come from Caffe's coordinate maps (https://github.com/BVLC/caffe, python/caffe/coord_map.py): a layer
maps input coordinates to output coordinates, x_out = a * x_in + b, with
  convolution / pooling (kernel k, stride s, padding p):  a = 1/s, b = (p - (k - 1)/2) / s
  deconvolution (kernel k, stride s, padding p):         a = s,   b = (k - 1)/2 - p
and a crop of blob A to blob B's grid is the offset b_A - b_B (both at the same scale a).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from segcli.models import build_model

# (kind, kernel, stride, padding) of each layer along the trunk, as in pytorch-fcn's VGG16 FCNs
CONV3 = ("conv", 3, 1, 1)
POOL = ("conv", 2, 2, 0)  # max pooling maps coordinates like a convolution
TRUNK = {
    "pool3": [("conv", 3, 1, 100), CONV3, POOL, CONV3, CONV3, POOL, CONV3, CONV3, CONV3, POOL],
    "pool4": [CONV3, CONV3, CONV3, POOL],
    "score_fr": [CONV3, CONV3, CONV3, POOL, ("conv", 7, 1, 0), ("conv", 1, 1, 0), ("conv", 1, 1, 0)],
}


def deconv(kernel_factor: int) -> tuple:
    return ("deconv", 2 * kernel_factor, kernel_factor, 0)  # pytorch-fcn: ConvTranspose2d(k = 2 * stride, no padding)


def through(mapping: tuple[Fraction, Fraction], layers) -> tuple[Fraction, Fraction]:
    a, b = mapping
    for kind, kernel, stride, padding in layers:
        if kind == "conv":
            a, b = a / stride, (b + padding - Fraction(kernel - 1, 2)) / stride
        else:
            a, b = a * stride, b * stride + Fraction(kernel - 1, 2) - padding
    return a, b


def crop(blob: tuple[Fraction, Fraction], onto: tuple[Fraction, Fraction]) -> int:
    assert blob[0] == onto[0], "a crop joins blobs at the same scale"
    offset = blob[1] - onto[1]
    assert offset.denominator == 1 and offset >= 0
    return int(offset)


def derived_offsets() -> dict[str, list[int]]:
    """Each net's crops in the order its forward applies them (skip crops, then the final one)."""
    identity = (Fraction(1), Fraction(0))
    pool3 = through(identity, TRUNK["pool3"])
    pool4 = through(pool3, TRUNK["pool4"])
    score = through(pool4, TRUNK["score_fr"])
    offsets = {"fcn32s": [crop(through(score, [deconv(32)]), identity)]}
    upscore2 = through(score, [deconv(2)])
    offsets["fcn16s"] = [crop(pool4, upscore2), crop(through(upscore2, [deconv(16)]), identity)]
    upscore_pool4 = through(upscore2, [deconv(2)])
    offsets["fcn8s"] = [crop(pool4, upscore2), crop(pool3, upscore_pool4),
                        crop(through(upscore_pool4, [deconv(8)]), identity)]
    return offsets


def test_the_derivation_gives_the_published_offsets():
    """pytorch-fcn's literals (fcn32s.py: 19; fcn16s.py: 5, 27; fcn8s.py: 5, 9, 31) follow from the arithmetic."""
    assert derived_offsets() == {"fcn32s": [19], "fcn16s": [5, 27], "fcn8s": [5, 9, 31]}


@pytest.mark.parametrize("name, factor", [("fcn32s", 32), ("fcn16s", 16), ("fcn8s", 8)])
def test_logit_geometry_is_the_derived_final_crop(name, factor):
    model = build_model(name, 3, width=0.0625)
    assert model.logit_geometry() == (factor, derived_offsets()[name][-1])


def test_the_models_layers_are_the_ones_the_derivation_assumes():
    model = build_model("fcn8s", 3, width=0.0625)
    convs = [model.get_submodule(f"conv{stage}_{index}") for stage, count in enumerate((2, 2, 3, 3, 3), 1)
             for index in range(1, count + 1)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == \
        [((3, 3), (1, 1), (100, 100))] + [((3, 3), (1, 1), (1, 1))] * 12
    assert (model.pool.kernel_size, model.pool.stride, model.pool.padding) == (2, 2, 0)
    assert (model.fc6.kernel_size, model.fc6.padding) == ((7, 7), (0, 0))
    for layer, stride in ((model.upscore2, 2), (model.upscore_pool4, 2), (model.upscore8, 8)):
        assert (layer.kernel_size, layer.stride, layer.padding) == ((2 * stride,) * 2, (stride,) * 2, (0, 0))


def cut(scores: torch.Tensor, offset: int, height: int, width: int) -> torch.Tensor:
    return scores[:, :, offset:offset + height, offset:offset + width]


def expected_forward(model, name: str, x: torch.Tensor) -> torch.Tensor:
    """pytorch-fcn's forward written out with the derived offsets, over segcli's own layers."""
    offsets = derived_offsets()[name]
    pool3, pool4, score = model._trunk(x)
    height, width = x.shape[-2:]
    if name == "fcn32s":
        return cut(model.upscore(score), offsets[0], height, width)
    upscore2 = model.upscore2(score)
    fused = upscore2 + cut(model.score_pool4(pool4), offsets[0], *upscore2.shape[-2:])
    if name == "fcn16s":
        return cut(model.upscore16(fused), offsets[1], height, width)
    upscore_pool4 = model.upscore_pool4(fused)
    fused = upscore_pool4 + cut(model.score_pool3(pool3), offsets[1], *upscore_pool4.shape[-2:])
    return cut(model.upscore8(fused), offsets[2], height, width)


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
def test_forward_crops_every_skip_at_the_derived_offsets(name):
    torch.manual_seed(0)
    model = build_model(name, 3, width=0.0625).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # the skip scores start at zero: give every path a say
            parameter.add_(torch.randn_like(parameter) * 0.05)
        x = torch.randn(1, 3, 45, 61)  # odd, non-square: a crop off by one cannot hide
        out = model(x)
        assert out.shape == (1, 3, 45, 61)
        torch.testing.assert_close(out, expected_forward(model, name, x), rtol=1e-5, atol=1e-5)
