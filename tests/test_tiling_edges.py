"""segcli.tiling at its boundaries: the --tile/--tile-overlap values at their limits, when a size is tiled, tile
offsets when the overlap is the whole tile, the window's ramp, and ramps only along an axis with neighbours."""

from __future__ import annotations

import math

import pytest
import torch

from segcli.errors import SegcliError
from segcli.tiling import (TileGrid, TilingPolicy, TTAParams, tile_starts, tiled_logit_bands, tiled_logit_bands_of_rows,
                           tiled_logits, tta_probabilities, window_1d)


def test_overlap_limits_are_inclusive_and_the_options_are_kept():
    assert TilingPolicy.parse("auto", overlap=0.0) == TilingPolicy(mode="auto", overlap=0.0, max_tiles_per_batch=4)
    assert TilingPolicy.parse("off", overlap=0.9, max_tiles_per_batch=2) == TilingPolicy(
        mode="off", overlap=0.9, max_tiles_per_batch=2)
    assert TilingPolicy.parse(" 512 ", overlap=0.1, max_tiles_per_batch=3) == TilingPolicy(
        mode="size", tile_size=512, overlap=0.1, max_tiles_per_batch=3)
    assert TilingPolicy.parse(640).max_tiles_per_batch == 4 and TilingPolicy.parse(640).mode == "size"
    for overlap in (-0.01, 0.91):
        with pytest.raises(SegcliError) as raised:
            TilingPolicy.parse("auto", overlap=overlap)
        assert str(raised.value) == f"tile overlap {overlap}: use a fraction of the tile between 0 and 0.9"


def test_a_size_is_tiled_only_when_it_is_over_the_limit():
    auto = TilingPolicy.parse("auto")
    assert not auto.applies_to(2048, 2048) and auto.applies_to(2049, 2048) and auto.applies_to(1024, 4097)
    sized = TilingPolicy.parse("512")
    assert not sized.applies_to(512, 512) and sized.applies_to(513, 512) and sized.applies_to(512, 513)
    assert not TilingPolicy.parse("off").applies_to(10_000, 10_000)


def test_tile_offsets_with_the_whole_tile_overlapping_step_one_pixel():
    assert tile_starts(4, 4, 1) == [0]
    assert tile_starts(5, 4, 1) == [0, 1]
    assert tile_starts(10, 4, 4) == [0, 1, 2, 3, 4, 5, 6]  # stride at least one pixel
    assert tile_starts(10, 4, 1) == [0, 3, 6]


def test_the_window_ramps_over_the_given_pixels_only():
    torch.testing.assert_close(window_1d(5, 0), torch.ones(5))
    # ramp 1: pixel centres 0.5 from the edge -> 0.5 - 0.5 cos(pi / 2) = 0.5; inner pixels 1
    torch.testing.assert_close(window_1d(4, 1), torch.tensor([0.5, 1.0, 1.0, 0.5]))
    expected = [0.5 - 0.5 * math.cos(math.pi * min(i + 0.5, 6 - i - 0.5) / 2) if min(i + 0.5, 6 - i - 0.5) < 2
                else 1.0 for i in range(6)]
    torch.testing.assert_close(window_1d(6, 2), torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("height, width", [(100, 300), (300, 100)])
def test_ramps_only_along_an_axis_with_more_than_one_tile(height, width):
    grid = TileGrid.for_input(height, width, 128, 0.25)
    one, many = (grid.ys, grid.xs) if height == 100 else (grid.xs, grid.ys)
    assert one == (0,) and len(many) == 3
    ramps = (grid.ramp_y, grid.ramp_x) if height == 100 else (grid.ramp_x, grid.ramp_y)
    assert ramps == (0, 32)  # 25% of a 128-pixel tile along the tiled axis; none along the other


def test_two_tiles_along_an_axis_have_ramps():
    grid = TileGrid.for_input(200, 200, 128, 0.25)
    assert (grid.ys, grid.xs, grid.ramp_y, grid.ramp_x) == ((0, 72), (0, 72), 32, 32)


def test_tta_passes_without_flip_are_unflipped():
    assert TTAParams(scales=(1.0, 0.5), flip=False).passes() == [(1.0, False), (0.5, False)]
    assert TTAParams(scales=(1.0,), flip=True).passes() == [(1.0, False), (1.0, True)]


def test_tta_resizes_every_scale_but_one_to_at_least_a_pixel():
    seen: list[tuple[int, int]] = []

    def logits_at(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.zeros(1, 2, *x.shape[-2:])

    probabilities = tta_probabilities(logits_at, torch.rand(1, 3, 3, 5), TTAParams(scales=(0.25, 2.0, 1.0), flip=False))
    assert seen == [(1, 1), (6, 10), (3, 5)]  # round(3 * 0.25) = 1, round(5 * 0.25) = 1; 2x; as given
    torch.testing.assert_close(probabilities, torch.full((1, 2, 3, 5), 0.5))


@pytest.mark.parametrize("asked, width, largest", [(None, 128, 4), (2, 64, 2)])
def test_tiled_logits_runs_at_most_the_asked_tiles_at_once(asked, width, largest):
    batches: list[int] = []

    def forward(tiles):
        batches.append(tiles.shape[0])
        return torch.zeros(tiles.shape[0], 2, *tiles.shape[-2:])

    options = {} if asked is None else {"max_tiles_per_batch": asked}
    logits = tiled_logits(forward, torch.rand(1, 3, 32, width), 2, 32, 0.25, **options)
    assert logits.shape == (1, 2, 32, width)
    assert max(batches) == largest  # one row of 5 tiles (128 px: starts 0, 24, 48, 72, 96) or of 3 (64 px)


def _pointwise(tiles):
    """A 1x1 'model' (two classes from the channels): tiled logits equal whole-image logits exactly."""
    return torch.stack([tiles[:, 0] - tiles[:, 1], tiles[:, 2] * 2.0], dim=1)


def _read_tiles(image):
    def read(y, xs, tile_height, tile_width):
        return torch.cat([image[..., y:y + tile_height, x:x + tile_width] for x in xs])
    return read


@pytest.mark.parametrize("reuse", [False, True])
def test_bands_are_whole_rows_equal_to_the_untiled_logits_even_when_one_row_is_kept(reuse):
    # tile 32 with a 1-pixel overlap: rows 0, 31, 62 - each shift keeps exactly one row of the accumulators
    image = torch.rand(1, 3, 94, 40)
    bands = [(top, band.clone()) for top, band in tiled_logit_bands_of_rows(
        _read_tiles(image), 94, 40, _pointwise, 2, 32, 1 / 32, reuse=reuse)]
    assert all(band.shape[1] > 0 for _, band in bands) and len(bands) > 1
    assert [top for top, _ in bands] == [0] + [sum(band.shape[1] for _, band in bands[:i]) for i in range(1, len(bands))]
    torch.testing.assert_close(torch.cat([band for _, band in bands], dim=1), _pointwise(image)[0], rtol=0, atol=1e-5)


def test_tiles_the_model_does_not_answer_for_are_refused():
    image = torch.rand(1, 3, 40, 40)
    with pytest.raises(SegcliError) as raised:
        list(tiled_logit_bands(lambda tiles: torch.zeros(tiles.shape[0], 3, 32, 32), image, 2, 32))
    assert str(raised.value) == ("the model returned logits (2, 3, 32, 32) for tiles (2, 3, 32, 32); "
                                 "expected one logit map per class at the tile size")
    with pytest.raises(SegcliError, match=r"^the model returned logits \(2, 2, 16, 16\) for tiles \(2, 3, 32, 32\)"):
        list(tiled_logit_bands(lambda tiles: torch.zeros(tiles.shape[0], 2, 16, 16), image, 2, 32))
    for shape in ((2, 3, 40, 40), (3, 40, 40)):
        with pytest.raises(ValueError) as raised:
            list(tiled_logit_bands(_pointwise, torch.rand(*shape), 2, 32))
        assert str(raised.value) == f"tiled inference takes one [1, 3, H, W] image, got {shape}"


def test_tiled_logit_bands_runs_four_tiles_at_once_by_default():
    batches: list[int] = []

    def forward(tiles):
        batches.append(tiles.shape[0])
        return _pointwise(tiles)

    image = torch.rand(1, 3, 32, 128)
    list(tiled_logit_bands(forward, image, 2, 32, 0.25))
    list(tiled_logit_bands_of_rows(_read_tiles(image), 32, 128, forward, 2, 32, 0.25))
    assert batches == [4, 1, 4, 1]  # one row of 5 tiles, twice
