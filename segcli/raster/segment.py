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

PREPROCESS_COLUMNS = 2048


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

    def read_rows(top: int, rows: int) -> torch.Tensor:
        """The engine's preprocessing (per pixel), a column chunk at a time: no full-width float temporaries."""
        rgb, _ = source.rows(top, rows)
        strip = torch.empty(1, 3, rows, source.width)
        for left in range(0, source.width, PREPROCESS_COLUMNS):
            strip[..., left:left + PREPROCESS_COLUMNS] = preprocess(rgb[:, left:left + PREPROCESS_COLUMNS],
                                                                   preprocessing)
        return strip

    # on a CPU one tile per pass: the activations of four 1024 px tiles alone take about a GB of RAM
    per_pass = 1 if engine.plan.device.type == "cpu" else policy.max_tiles_per_batch
    for top, band in tiled_logit_bands_of_rows(read_rows, source.height, source.width, engine.forward,
                                               engine.num_classes, policy.tile_size, policy.overlap,
                                               per_pass, reuse=True):
        labels = band.argmax(0).numpy().astype(np.uint8)
        del band
        labels[~_valid_rows(source, top, labels.shape[0])] = VOID
        counts += np.bincount(labels.ravel(), minlength=256)
        write(top, labels)
        if on_band is not None:
            on_band(top + labels.shape[0])
    engine.plan.synchronize()
    return {"class_pixels": counts[:engine.num_classes].tolist(), "void_pixels": int(counts[VOID]),
            "seconds": time.perf_counter() - started}


def _valid_rows(source: RasterSource, top: int, rows: int) -> np.ndarray:
    from rasterio.windows import Window

    return source.dataset.dataset_mask(window=Window(0, top, source.width, rows)) > 0
