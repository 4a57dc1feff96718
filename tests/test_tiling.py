"""Sliding windows and TTA against whole-image inference and hand-written averages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine_support import engine_of
from segcli.checkpoints.record import CheckpointRecord
from segcli.engine import preprocess
from segcli.errors import SegcliError
from segcli.tiling import (
    TileGrid, TilingPolicy, TTAParams, tile_starts, tiled_logit_bands, tiled_logits, tta_probabilities, window_1d,
)

NUM_CLASSES = 3


def _pointwise_net() -> nn.Module:
    """1x1 convolutions only: exactly translation-equivariant, so tiles must reproduce the whole image."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, NUM_CLASSES, 1)).eval()


def _padded_net() -> nn.Module:
    """Two 3x3 convolutions with zero padding: each logit sees 2 pixels around it (receptive radius 2)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, NUM_CLASSES, 3, padding=1)).eval()


def _forward(net: nn.Module):
    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(batch)
    return run


def _record() -> CheckpointRecord:
    return CheckpointRecord(name="t", model="lraspp", dataset="t",
                            categories=tuple(f"c{i}" for i in range(NUM_CLASSES)), filename="t.safetensors")


def _input(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_tile_starts_cover_the_axis_and_end_at_its_end():
    assert tile_starts(20, 32, 8) == [0]
    starts = tile_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(b - a <= 32 - 8 for a, b in zip(starts, starts[1:]))  # neighbours overlap by >= 8


def test_window_is_positive_and_neighbours_sum_to_one_over_the_overlap():
    weight = window_1d(32, 8).numpy()
    assert weight.min() > 0 and weight.max() == pytest.approx(1.0)
    np.testing.assert_allclose(weight[-8:] + weight[:8], 1.0, atol=1e-6)  # raised cosine: partition of unity


def test_tiled_logits_equal_whole_image_logits_for_a_translation_equivariant_net():
    net, image = _pointwise_net(), _input(50, 70)
    whole = _forward(net)(image)
    tiled = tiled_logits(_forward(net), image, NUM_CLASSES, tile_size=24, overlap=0.25, max_tiles_per_batch=3)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def _clean_interior(height: int, width: int, grid: TileGrid, radius: int) -> np.ndarray:
    """Pixels at least `radius + 1` away from every internal tile edge of every tile that covers them.

    There a padded net's tile logits equal its whole-image logits: the zero padding a tile adds at
    its cut edges is outside the pixel's receptive field (image borders are padded alike in both).
    """
    clean = np.ones((height, width), dtype=bool)
    for y in grid.ys:
        for x in grid.xs:
            bottom, right = y + grid.tile_height, x + grid.tile_width
            near_cut = np.zeros((grid.tile_height, grid.tile_width), dtype=bool)
            if y > 0:
                near_cut[:radius] = True
            if bottom < height:
                near_cut[-radius:] = True
            if x > 0:
                near_cut[:, :radius] = True
            if right < width:
                near_cut[:, -radius:] = True
            clean[y:bottom, x:right] &= ~near_cut
    return clean


def test_tiled_logits_match_whole_image_away_from_tile_cuts_for_a_padded_net():
    height, width, tile = 96, 128, 40
    net, image = _padded_net(), _input(height, width, seed=2)
    whole = _forward(net)(image)[0]
    tiled = tiled_logits(_forward(net), image, NUM_CLASSES, tile_size=tile, overlap=0.25)[0]
    clean = _clean_interior(height, width, TileGrid.for_input(height, width, tile, 0.25), radius=2)
    assert 0.7 < clean.mean() < 1.0  # the comparison covers most pixels, and the cuts are really excluded
    np.testing.assert_allclose(tiled.numpy()[:, clean], whole.numpy()[:, clean], atol=1e-5)
    # near the cuts the window weight is small, so labels still agree almost everywhere
    agreement = (tiled.argmax(0) == whole.argmax(0)).float().mean().item()
    assert agreement >= 0.99


def test_bands_cover_each_row_once_and_the_tiler_holds_at_most_k_tiles():
    net, image = _pointwise_net(), _input(90, 75, seed=3)
    tiles_per_call: list[int] = []

    def counting_forward(batch: torch.Tensor) -> torch.Tensor:
        tiles_per_call.append(batch.shape[0])
        return _forward(net)(batch)

    bands = list(tiled_logit_bands(counting_forward, image, NUM_CLASSES, tile_size=32, overlap=0.25,
                                   max_tiles_per_batch=2))
    grid = TileGrid.for_input(90, 75, 32, 0.25)
    assert max(tiles_per_call) == 2 and sum(tiles_per_call) == grid.count
    rows = [top + row for top, band in bands for row in range(band.shape[1])]
    assert rows == list(range(90))
    assert max(band.shape[1] for _, band in bands) <= 32  # never more than a tile's height of logits held
    joined = torch.cat([band for _, band in bands], dim=1)
    torch.testing.assert_close(joined, _forward(net)(image)[0], atol=1e-5, rtol=1e-5)


def test_engine_tiles_big_inputs_with_the_same_labels_and_probabilities():
    image = np.random.default_rng(4).integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    plain = engine_of(_pointwise_net(), _record(), tiling=TilingPolicy.parse("off"))
    tiled = engine_of(_pointwise_net(), _record(), tiling=TilingPolicy.parse("32", overlap=0.3))
    assert tiled.tiling.applies_to(70, 90) and not plain.tiling.applies_to(70, 90)
    expected = plain.predict(image, return_probabilities=True)
    streamed = tiled.predict(image, return_probabilities=True)
    np.testing.assert_array_equal(streamed.labels, expected.labels)
    np.testing.assert_allclose(streamed.probabilities, expected.probabilities, atol=1e-5)
    labels_only = tiled.predict(image)
    np.testing.assert_array_equal(labels_only.labels, expected.labels)


def test_tiling_policy_parses_the_cli_values():
    assert TilingPolicy.parse("auto").applies_to(3000, 4000)
    assert not TilingPolicy.parse("auto").applies_to(520, 780)
    assert not TilingPolicy.parse("off").applies_to(9000, 9000)
    assert TilingPolicy.parse("512").applies_to(400, 513)
    for bad in ("0", "big", "-5"):
        with pytest.raises(SegcliError, match="^tile "):
            TilingPolicy.parse(bad)
    with pytest.raises(SegcliError, match="^tile overlap "):
        TilingPolicy.parse("auto", overlap=0.95)


def test_flip_tta_of_a_flip_equivariant_net_equals_the_plain_prediction():
    net, image = _pointwise_net(), _input(20, 30, seed=5)
    averaged = tta_probabilities(_forward(net), image, TTAParams(scales=(1.0,), flip=True))
    torch.testing.assert_close(averaged, torch.softmax(_forward(net)(image), 1), atol=1e-6, rtol=1e-6)


def test_tta_averages_probabilities_over_scales_and_flips():
    net, image = _padded_net(), _input(24, 32, seed=6)
    forward = _forward(net)
    expected = torch.zeros(1, NUM_CLASSES, 24, 32)
    for scale in (0.5, 1.0):
        scaled = image if scale == 1.0 else F.interpolate(image, scale_factor=scale, mode="bilinear")
        for flipped in (False, True):
            logits = forward(scaled.flip(-1)).flip(-1) if flipped else forward(scaled)
            expected += torch.softmax(F.interpolate(logits, size=(24, 32), mode="bilinear"), 1) / 4
    averaged = tta_probabilities(forward, image, TTAParams(scales=(0.5, 1.0), flip=True))
    torch.testing.assert_close(averaged, expected, atol=1e-5, rtol=1e-5)
    # a padded net is not flip-equivariant, so the flip pass really changes the result
    assert not torch.allclose(averaged, tta_probabilities(forward, image, TTAParams(scales=(0.5, 1.0), flip=False)))


def test_engine_tta_returns_normalised_probabilities_at_the_image_size():
    image = np.random.default_rng(7).integers(0, 256, size=(21, 17, 3), dtype=np.uint8)
    engine = engine_of(_padded_net(), _record(), tta=TTAParams())
    prediction = engine.predict(image, return_probabilities=True)
    assert prediction.probabilities.shape == (NUM_CLASSES, 21, 17)
    np.testing.assert_allclose(prediction.probabilities.sum(0), 1.0, atol=1e-5)
    expected = tta_probabilities(_forward(engine.model), preprocess(image, engine.record.preprocessing), TTAParams())
    np.testing.assert_array_equal(prediction.labels, expected[0].argmax(0).numpy())
