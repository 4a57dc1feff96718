"""Fixtures for tests/raster: small GeoTIFFs in tmp_path (helpers in tests/raster_support.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rasterio")


@pytest.fixture
def make_raster(tmp_path):
    """make(name, height, width, bands, dtype, crs=..., nodata=...) -> (path, written array)."""
    from raster_support import scene, write_raster

    def make(name="scene.tif", height=150, width=217, bands=3, dtype=np.uint8, **kwargs):
        data = scene(height, width, bands, dtype=dtype)
        return write_raster(tmp_path / name, data, **kwargs), data
    return make
