"""The upsampling operators against independent computations (F.interpolate, F.max_unpool2d, by hand)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segcli.errors import UnknownNameError
from segcli.models.base import bilinear_kernel
from segcli.upsampling.methods import (METHOD_NAMES, TRAINING_FREE_METHODS, max_unpool, parse_methods,
                                       transposed_bilinear_upsample, upsample_logits_with)
from segcli.upsampling.network import Upsample2x, UpsamplingDecoder


def test_bilinear_kernel_factor_2_by_hand():
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    kernel = bilinear_kernel(3, 2)
    assert kernel.shape == (3, 1, 4, 4)
    for channel in range(3):
        torch.testing.assert_close(kernel[channel, 0], taps[:, None] * taps[None, :])


def test_bilinear_kernel_factor_3_is_odd_sized_and_peaks_at_one():
    kernel = bilinear_kernel(1, 3)[0, 0]
    assert kernel.shape == (5, 5)
    torch.testing.assert_close(kernel[2], torch.tensor([1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3]))


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_fixed_transposed_equals_bilinear_interpolation_inside_the_border(factor):
    # With stride f, kernel 2f - f % 2 and padding f // 2 (the full output cropped by f // 2 on each
    # side), output pixel j samples input position (j + 0.5) / f - 0.5: exactly F.interpolate's
    # align_corners=False grid. They agree on rows/columns f // 2 .. H*f - f // 2 - 1, and differ in
    # the f // 2 outermost ones, where interpolate clamps and the transposed convolution sees zeros.
    torch.manual_seed(factor)
    logits = torch.randn(2, 3, 5, 7)
    transposed = transposed_bilinear_upsample(logits, factor)
    reference = F.interpolate(logits, scale_factor=factor, mode="bilinear", align_corners=False)
    assert transposed.shape == reference.shape == (2, 3, 5 * factor, 7 * factor)
    border = factor // 2
    inner = (..., slice(border, 5 * factor - border), slice(border, 7 * factor - border))
    torch.testing.assert_close(transposed[inner], reference[inner], atol=1e-5, rtol=1e-5)
    if border:
        outermost_row = (..., border - 1, slice(border, 7 * factor - border))
        assert (transposed[outermost_row] - reference[outermost_row]).abs().max() > 1e-2


def test_fixed_transposed_of_a_constant_is_constant_inside():
    constant = torch.full((1, 1, 4, 4), 2.0)
    out = transposed_bilinear_upsample(constant, 4)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.full((1, 1, 12, 12), 2.0))
    assert out[0, 0, 0, 0] < 2.0  # the zero neighbours outside darken the border


def _hand_example():
    x = torch.tensor([[1., 2., 5., 0.],
                      [3., 4., 1., 1.],
                      [0., 0., 9., 8.],
                      [7., 0., 6., 6.]]).view(1, 1, 4, 4)
    unpooled = torch.tensor([[0., 0., 5., 0.],
                             [0., 4., 0., 0.],
                             [0., 0., 9., 0.],
                             [7., 0., 0., 0.]]).view(1, 1, 4, 4)
    return x, unpooled


def test_max_unpool_hand_made_4x4():
    x, expected = _hand_example()
    pooled, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
    assert indices.view(-1).tolist() == [5, 2, 12, 10]  # flat positions of 4, 5, 7, 9
    torch.testing.assert_close(max_unpool(pooled, indices, (4, 4)), expected)


@pytest.mark.parametrize("size", [(8, 8), (9, 7), (5, 11)])
def test_max_unpool_matches_torch_and_puts_zeros_elsewhere(size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size)
    pooled, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
    mine = max_unpool(pooled, indices, size)
    torch.testing.assert_close(mine, F.max_unpool2d(pooled, indices, 2, 2, output_size=size))
    assert mine.shape == x.shape
    nonzero = mine != 0
    assert int(nonzero.sum()) == pooled.numel()              # one value per pooling window
    torch.testing.assert_close(mine[nonzero], x[nonzero])     # each at the position it came from


def test_max_unpool_passes_gradients_to_the_values():
    pooled = torch.tensor([[[[4.0, 5.0]]]], requires_grad=True)
    indices = torch.tensor([[[[1, 6]]]])
    out = max_unpool(pooled, indices, (2, 4))
    (out * torch.arange(8.0).view(1, 1, 2, 4)).sum().backward()
    assert pooled.grad.view(-1).tolist() == [1.0, 6.0]


@pytest.mark.parametrize("method", TRAINING_FREE_METHODS)
@pytest.mark.parametrize("low, size", [((5, 7), (40, 56)), ((3, 4), (37, 53)), ((1, 1), (9, 5)), ((4, 4), (4, 4)),
                                       ((17, 13), (33, 25))])
def test_training_free_methods_give_exactly_the_target_size(method, low, size):
    logits = torch.randn(1, 4, *low)
    assert upsample_logits_with(method, logits, size).shape == (1, 4, *size)


def test_nearest_copies_each_value_into_its_block():
    logits = torch.arange(6.0).view(1, 1, 2, 3)
    out = upsample_logits_with("nearest", logits, (4, 6))
    torch.testing.assert_close(out[0, 0], logits[0, 0].repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_transposed_fixed_at_an_integer_factor_is_the_plain_operator():
    logits = torch.randn(1, 2, 4, 6)
    torch.testing.assert_close(upsample_logits_with("transposed-fixed", logits, (32, 48)),
                               transposed_bilinear_upsample(logits, 8))


WIDTHS = (4, 8, 8, 16)


def _features(height: int, width: int, widths=WIDTHS) -> dict:
    """Random shared-encoder features for a decoder whose output is 16 * (height, width)."""
    generator = torch.Generator().manual_seed(1)
    return {"context": torch.randn(2, 256, height, width, generator=generator),
            "low_level": torch.randn(2, 48, 4 * height, 4 * width, generator=generator),
            "positions": tuple(torch.randint(0, 4, (2, c, height * 2 ** k, width * 2 ** k), generator=generator,
                                             dtype=torch.uint8) for k, c in enumerate(widths))}


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_decoder_returns_logits_at_16_times_the_context(method):
    torch.manual_seed(0)
    net = UpsamplingDecoder(5, method, widths=WIDTHS).eval()
    with torch.no_grad():
        assert net(_features(2, 3)).shape == (2, 5, 32, 48)


def test_unpool_decoder_uses_the_positions_and_the_others_ignore_them():
    features = _features(2, 2)
    moved = dict(features, positions=tuple((p + 1) % 4 for p in features["positions"]))
    for method in METHOD_NAMES:
        torch.manual_seed(0)
        net = UpsamplingDecoder(5, method, widths=WIDTHS).eval()
        with torch.no_grad():
            same = torch.equal(net(features), net(moved))
        assert same == (method != "unpool"), method


def test_learned_transposed_starts_as_the_fixed_bilinear_one():
    torch.manual_seed(0)
    x = torch.randn(1, 6, 5, 7)
    fixed = Upsample2x("transposed-fixed", 6)(x, None)
    learned = Upsample2x("transposed-learned", 6)(x, None)
    torch.testing.assert_close(learned, fixed)


def test_variants_start_from_the_same_weights_and_only_transposed_learned_has_upsampling_parameters():
    states = {}
    for method in METHOD_NAMES:
        torch.manual_seed(3)
        net = UpsamplingDecoder(5, method, widths=WIDTHS)
        states[method] = net.state_dict()
        expected = sum(c * c * 16 for c in WIDTHS) if method == "transposed-learned" else 0
        assert net.upsampling_parameters() == expected
    shared = [key for key in states["nearest"] if not key.startswith("upsamplers.")]
    for method in METHOD_NAMES:
        assert set(states[method]) - {k for k in states[method] if k.startswith("upsamplers.")} == set(shared)
        for key in shared:
            torch.testing.assert_close(states[method][key], states["nearest"][key])


def test_parse_methods():
    assert parse_methods(None, METHOD_NAMES) == METHOD_NAMES
    assert parse_methods("bilinear, nearest,bilinear", METHOD_NAMES) == ("bilinear", "nearest")
    with pytest.raises(UnknownNameError, match="choose from"):
        parse_methods("bicubic", METHOD_NAMES)
    with pytest.raises(UnknownNameError, match="trained decoder"):
        parse_methods("unpool", TRAINING_FREE_METHODS)
    with pytest.raises(UnknownNameError, match="needs a trained decoder"):
        upsample_logits_with("unpool", torch.zeros(1, 1, 2, 2), (4, 4))
