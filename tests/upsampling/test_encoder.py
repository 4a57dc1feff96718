"""The shared encoder: dense stride-2 layers agree with the strided ones, positions are max-pooling's indices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segcli.models import build_model
from segcli.upsampling.encoder import (STRIDE2_BLOCKS, SharedEncoder, _dense_forward, _window_argmax,
                                       flat_indices)
from segcli.upsampling.methods import max_unpool

WIDTHS = (64, 32, 24, 16)


@pytest.fixture(scope="module")
def deeplab():
    torch.manual_seed(0)
    return build_model("deeplabv3p-mobilenet", 9).eval()


def test_window_positions_are_max_pool_indices():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 8)
    _, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
    torch.testing.assert_close(flat_indices(_window_argmax(x)), indices)


def test_odd_sides_get_a_last_one_row_window():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 2, 1] = 5.0  # last row (alone in its window), second column
    positions = _window_argmax(x)
    assert positions.shape == (1, 1, 2, 2) and positions[0, 0, 1, 0] == 1  # row 0, column 1 of the window


def test_unpooling_with_the_positions_puts_each_value_at_its_maximum():
    x = torch.arange(16.0).view(1, 1, 4, 4).flip(-1)
    pooled = F.max_pool2d(x, 2)
    restored = max_unpool(pooled, flat_indices(_window_argmax(x)), (4, 4))
    assert torch.equal(restored, torch.where(restored > 0, x, torch.zeros_like(x)))
    assert int((restored > 0).sum()) == 4


@pytest.mark.parametrize("index", STRIDE2_BLOCKS)
def test_dense_layer_sampled_at_stride_2_is_the_strided_layer(deeplab, index):
    blocks = list(deeplab.backbone["low_level_features"]) + list(deeplab.backbone["high_level_features"])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for block in blocks[:index]:
            x = block(x)
        strided, dense = blocks[index](x), _dense_forward(blocks[index], x)
    assert dense.shape[-2:] == x.shape[-2:]
    # the unpadded stem's output i is centred on input 2i + 1; the padded blocks' on input 2i
    offset = 1 if index == 0 else 0
    sampled = dense[..., offset::2, offset::2][..., :strided.shape[-2], :strided.shape[-1]]
    torch.testing.assert_close(sampled, strided, atol=1e-4, rtol=1e-4)


def test_encoder_feature_shapes_and_frozen(deeplab):
    encoder = SharedEncoder(deeplab, WIDTHS)
    encoder.train()
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    features = encoder(torch.randn(2, 3, 64, 48))
    assert features.context.shape == (2, 256, 4, 3) and features.low_level.shape == (2, 48, 16, 12)
    assert [tuple(p.shape) for p in features.positions] == [(2, c, 4 * 2 ** k, 3 * 2 ** k) for k, c in enumerate(WIDTHS)]
    assert all(p.dtype == torch.uint8 and int(p.max()) <= 3 for p in features.positions)
    with pytest.raises(ValueError, match="multiples of 16"):
        encoder(torch.randn(1, 3, 40, 48))
    with pytest.raises(ValueError, match="fewer than the decoder width"):
        SharedEncoder(deeplab, (65, 32, 24, 16))
