"""Sliding-window inference for big images, and test-time augmentation (multi-scale + flip).

Tiles overlap; each tile's logits are weighted by a raised-cosine window that falls towards the
tile's edges (never to zero), summed, and divided by the summed weights, so neighbouring tiles
blend without seams and a pixel that only one tile covers gets exactly that tile's logits.
Tiles are processed one row of tiles at a time, and rows of the image that no later tile can
touch are handed out at once (`tiled_logit_bands`), so memory holds one band of
`tile_height x image_width` logits and at most `max_tiles_per_batch` tiles, not the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from segcli.errors import SegcliError

# --tile auto: tile when the model input has more pixels than this (a 2048x2048 input already
# needs several GB of activations in a ResNet at output stride 8), with tiles of AUTO_TILE_SIZE.
AUTO_TILE_MAX_PIXELS = 2048 * 2048
AUTO_TILE_SIZE = 1024
DEFAULT_OVERLAP = 0.25
MIN_TILE_SIZE = 32

Forward = Callable[[torch.Tensor], torch.Tensor]  # [N, 3, h, w] -> [N, C, h, w] float32 logits


@dataclass(frozen=True)
class TilingPolicy:
    """When and how to cut the model input into tiles (`--tile auto|off|SIZE`, `--tile-overlap`)."""

    mode: str = "auto"                 # "auto", "off" or "size" (then `tile_size` is used always)
    tile_size: int = AUTO_TILE_SIZE    # tile side in model-input pixels
    overlap: float = DEFAULT_OVERLAP   # fraction of a tile shared with its neighbour, in [0, 0.9]
    max_tiles_per_batch: int = 4       # tiles per forward pass (memory bound)

    @classmethod
    def parse(cls, text: str | int, overlap: float = DEFAULT_OVERLAP, max_tiles_per_batch: int = 4) -> "TilingPolicy":
        """`auto`, `off` or a tile side in pixels (e.g. `1024`)."""
        value = str(text).strip().lower()
        if not 0.0 <= overlap <= 0.9:
            raise SegcliError(f"tile overlap {overlap}: use a fraction of the tile between 0 and 0.9")
        if value in ("auto", "off"):
            return cls(mode=value, overlap=overlap, max_tiles_per_batch=max_tiles_per_batch)
        if not value.isdigit() or int(value) < MIN_TILE_SIZE:
            raise SegcliError(f"tile {text}: use auto, off or a tile size of at least {MIN_TILE_SIZE} pixels")
        return cls(mode="size", tile_size=int(value), overlap=overlap, max_tiles_per_batch=max_tiles_per_batch)

    def applies_to(self, height: int, width: int) -> bool:
        """Whether an input of this size is tiled under this policy."""
        if self.mode == "off":
            return False
        if self.mode == "auto":
            return height * width > AUTO_TILE_MAX_PIXELS
        return height > self.tile_size or width > self.tile_size


def tile_starts(length: int, tile: int, overlap_px: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering [0, length); the last tile ends at `length`."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap_px)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def window_1d(length: int, ramp: int) -> torch.Tensor:
    """1 in the middle, a raised-cosine ramp over `ramp` pixels at each end, positive everywhere.

    Two neighbours that overlap by exactly `ramp` pixels have weights summing to 1 there.
    """
    index = torch.arange(length, dtype=torch.float64)
    if ramp <= 0:
        return torch.ones(length, dtype=torch.float32)
    distance = torch.minimum(index + 0.5, length - index - 0.5) / ramp
    weight = 0.5 - 0.5 * torch.cos(math.pi * distance.clamp(max=1.0))
    return weight.float()


def window_2d(height: int, width: int, ramp_y: int, ramp_x: int) -> torch.Tensor:
    return window_1d(height, ramp_y)[:, None] * window_1d(width, ramp_x)[None, :]


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one input: sizes and start offsets along each axis."""

    tile_height: int
    tile_width: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    ramp_y: int
    ramp_x: int

    @classmethod
    def for_input(cls, height: int, width: int, tile_size: int, overlap: float) -> "TileGrid":
        tile_height, tile_width = min(tile_size, height), min(tile_size, width)
        overlap_y, overlap_x = int(round(tile_height * overlap)), int(round(tile_width * overlap))
        ys, xs = tile_starts(height, tile_height, overlap_y), tile_starts(width, tile_width, overlap_x)
        # ramps only where a neighbour exists; a single tile along an axis keeps full weight
        return cls(tile_height, tile_width, tuple(ys), tuple(xs),
                   overlap_y if len(ys) > 1 else 0, overlap_x if len(xs) > 1 else 0)

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def tiled_logit_bands(
    forward: Forward,
    image: torch.Tensor,
    num_classes: int,
    tile_size: int,
    overlap: float = DEFAULT_OVERLAP,
    max_tiles_per_batch: int = 4,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Blend tile logits of a [1, 3, H, W] input; yield (first row, [C, rows, W] logits) bands, top to bottom.

    A band is yielded as soon as no later tile overlaps its rows. The bands cover every row once.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"tiled inference takes one [1, 3, H, W] image, got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    def read_tiles(y: int, xs: tuple[int, ...], tile_height: int, tile_width: int) -> torch.Tensor:
        return torch.cat([image[..., y:y + tile_height, x:x + tile_width] for x in xs])

    yield from tiled_logit_bands_of_rows(read_tiles, height, width, forward, num_classes, tile_size, overlap,
                                         max_tiles_per_batch)


def tiled_logit_bands_of_rows(
    read_tiles: Callable[[int, tuple[int, ...], int, int], torch.Tensor],
    height: int,
    width: int,
    forward: Forward,
    num_classes: int,
    tile_size: int,
    overlap: float = DEFAULT_OVERLAP,
    max_tiles_per_batch: int = 4,
    reuse: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """`tiled_logit_bands` over an input read tile by tile: `read_tiles(y, xs, tile_height, tile_width)` gives
    the preprocessed [len(xs), 3, tile_height, tile_width] tiles whose top-left corners are (y, x) for x in xs,
    row by row of tiles, top to bottom (a raster too big for memory is read window by window).

    `reuse`: each band is the accumulator itself, divided in place (no band-sized copy), valid only until
    the next band is asked for. The accumulators shift in place, so memory holds one C x tile-height x W sum.
    """
    grid = TileGrid.for_input(height, width, tile_size, overlap)
    weight = window_2d(grid.tile_height, grid.tile_width, grid.ramp_y, grid.ramp_x)
    band_top = 0  # first row held in the accumulators
    logit_sum = torch.zeros(num_classes, grid.tile_height, width)
    weight_sum = torch.zeros(grid.tile_height, width)
    for row_index, y in enumerate(grid.ys):
        if y > band_top:  # rows above y are final: no tile from this row on reaches them
            done = y - band_top
            if reuse:
                yield band_top, logit_sum[:, :done].div_(weight_sum[:done])
            else:
                yield band_top, logit_sum[:, :done] / weight_sum[:done]
            _shift_up(logit_sum, done)
            _shift_up(weight_sum, done)
            band_top = y
        for first in range(0, len(grid.xs), max_tiles_per_batch):
            xs = grid.xs[first:first + max_tiles_per_batch]
            tiles = read_tiles(y, xs, grid.tile_height, grid.tile_width)
            logits = forward(tiles).float().cpu()
            if logits.shape[1] != num_classes or logits.shape[-2:] != tiles.shape[-2:]:
                raise SegcliError(
                    f"the model returned logits {tuple(logits.shape)} for tiles {tuple(tiles.shape)}; "
                    "expected one logit map per class at the tile size"
                )
            for tile_logits, x in zip(logits, xs):
                logit_sum[:, :, x:x + grid.tile_width] += tile_logits * weight
                weight_sum[:, x:x + grid.tile_width] += weight
    yield band_top, logit_sum.div_(weight_sum) if reuse else logit_sum / weight_sum


def _shift_up(accumulator: torch.Tensor, rows: int) -> None:
    """Move the rows below `rows` (dimension -2) to the top, in place, and zero the rest."""
    keep = accumulator.shape[-2] - rows
    if keep > 0:  # a copy of the kept rows only where source and target overlap (tiles sharing > half)
        kept = accumulator[..., rows:, :]
        accumulator[..., :keep, :] = kept.clone() if keep > rows else kept
    accumulator[..., keep:, :] = 0


def tiled_logits(
    forward: Forward,
    image: torch.Tensor,
    num_classes: int,
    tile_size: int,
    overlap: float = DEFAULT_OVERLAP,
    max_tiles_per_batch: int = 4,
) -> torch.Tensor:
    """[1, C, H, W] blended logits of a [1, 3, H, W] input (the whole map; bands joined)."""
    bands = [band for _, band in tiled_logit_bands(forward, image, num_classes, tile_size, overlap, max_tiles_per_batch)]
    return torch.cat(bands, dim=1).unsqueeze(0)


# --- test-time augmentation ---------------------------------------------------------------------

@dataclass(frozen=True)
class TTAParams:
    """Multi-scale + horizontal-flip test-time augmentation (`--tta`); probabilities are averaged."""

    scales: tuple[float, ...] = (0.75, 1.0, 1.25)
    flip: bool = True

    def passes(self) -> list[tuple[float, bool]]:
        return [(scale, flipped) for scale in self.scales for flipped in ((False, True) if self.flip else (False,))]


def tta_probabilities(logits_at: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, params: TTAParams) -> torch.Tensor:
    """Average softmax probabilities [1, C, H, W] over scaled and flipped copies of a [1, 3, H, W] input.

    `logits_at` maps an input to logits at that input's size (plain or tiled forward).
    """
    height, width = image.shape[-2:]
    total: torch.Tensor | None = None
    passes = params.passes()
    for scale, flipped in passes:
        scaled = image
        if scale != 1.0:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        if flipped:
            scaled = scaled.flip(-1)
        logits = logits_at(scaled).float().cpu()
        if flipped:
            logits = logits.flip(-1)
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        probabilities = torch.softmax(logits, dim=1)
        total = probabilities if total is None else total.add_(probabilities)
        del logits, probabilities
    assert total is not None
    return total / len(passes)
