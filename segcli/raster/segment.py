"""Segment a raster in row bands: the engine's forward pass and segcli.tiling's blending, windows read
from the file, finished bands argmaxed and written, so memory holds one band of logits
(C x (tile height) x width floats) and one strip of input rows, never the whole raster.

The windows are exactly those of the in-memory tiled prediction (`TileGrid.for_input` over the
whole raster), so the labels equal what `SegmentationEngine.predict` gives for the same image and
tiling. The checkpoint's `resize_shorter` is not applied: a raster is segmented at its own resolution.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from segcli.engine import SegmentationEngine, labels_dtype, preprocess
from segcli.raster.geotiff import VOID
from segcli.raster.source import RasterSource
from segcli.tiling import TilingPolicy, tiled_logit_bands_of_rows

ARGMAX_ROWS = 64  # rows argmaxed at once (int64 indices: 8 bytes a pixel)


def segment_raster(engine: SegmentationEngine, source: RasterSource, write, policy: TilingPolicy,
                   on_band=None) -> dict:
    """Run the raster through the engine; `write(top, labels)` gets each finished band (uint8, 255 void).

    Returns the class pixel counts, the void pixel count and the seconds taken.
    """
    if labels_dtype(engine.num_classes) != np.uint8:
        raise ValueError("label GeoTIFFs hold up to 255 classes")
    preprocessing = replace(engine.record.preprocessing, resize_shorter=None)
    counts = np.zeros(256, dtype=np.int64)
    started = time.perf_counter()

    strip: dict[int, np.ndarray] = {}  # the 3xHxW uint8 rows of the current row of tiles

    def read_tiles(y: int, xs, tile_height: int, tile_width: int) -> torch.Tensor:
        """The engine's preprocessing, tile by tile, of one uint8 strip read per row of tiles."""
        if y not in strip:
            strip.clear()
            strip[y] = source.planes(y, tile_height)
        planes = strip[y]
        return torch.cat([preprocess(planes[:, :, x:x + tile_width].transpose(1, 2, 0), preprocessing) for x in xs])

    # on a CPU one tile per pass: the activations of four 1024 px tiles alone take about a GB of RAM
    per_pass = 1 if engine.plan.device.type == "cpu" else policy.max_tiles_per_batch
    for top, band in tiled_logit_bands_of_rows(read_tiles, source.height, source.width, engine.forward,
                                               engine.num_classes, policy.tile_size, policy.overlap,
                                               per_pass, reuse=True):
        labels = _argmax_uint8(band)
        labels[~_valid_rows(source, top, labels.shape[0])] = VOID
        for row in range(0, labels.shape[0], ARGMAX_ROWS):
            counts += np.bincount(labels[row:row + ARGMAX_ROWS].ravel(), minlength=256)
        write(top, labels)
        if on_band is not None:
            on_band(top + labels.shape[0])
    engine.plan.synchronize()
    return {"class_pixels": counts[:engine.num_classes].tolist(), "void_pixels": int(counts[VOID]),
            "seconds": time.perf_counter() - started}


def _argmax_uint8(band: torch.Tensor) -> np.ndarray:
    """[C, rows, W] logits -> [rows, W] uint8 class indices, a few rows at a time."""
    labels = np.empty(band.shape[1:], dtype=np.uint8)
    for row in range(0, band.shape[1], ARGMAX_ROWS):
        labels[row:row + ARGMAX_ROWS] = band[:, row:row + ARGMAX_ROWS].argmax(0).numpy()
    return labels


def _valid_rows(source: RasterSource, top: int, rows: int) -> np.ndarray:
    from rasterio.windows import Window

    return source.dataset.dataset_mask(window=Window(0, top, source.width, rows)) > 0
