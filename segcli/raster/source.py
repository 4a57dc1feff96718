"""A raster opened for segmentation: which bands, how they become 0-255, which pixels are void.

Band choice (`--bands 3,2,1`): the listed bands in that order; by default the first three, or a
single band repeated three times. 8-bit data is used as it is; other types (16-bit, float) are
stretched per band from the 2nd to the 98th percentile of the valid pixels of a decimated read
(at most OVERVIEW_SIDE pixels along the longer side), or from `--scale MIN,MAX` for every band:
value v becomes round(255 * (v - low) / (high - low)), clipped to 0..255. Pixels the dataset mask
marks invalid (nodata, an alpha band or an internal mask: GDAL's dataset mask) are void.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcli.errors import InputImageError, MissingDependencyError, SegcliError
from segcli.text import printable

OVERVIEW_SIDE = 1024
PERCENTILES = (2.0, 98.0)
GEO_HINT = "rasters need rasterio: pip install 'segcli[geo]' (or pip install rasterio)"
RASTER_SUFFIXES = (".tif", ".tiff")


def import_rasterio():
    """rasterio, or MissingDependencyError with the pip hint."""
    try:
        import rasterio
    except ImportError:
        raise MissingDependencyError(GEO_HINT) from None
    return rasterio


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """`3,2,1` -> (3, 2, 1); 1-based band numbers, one or three of them."""
    if text is None:
        return None
    try:
        bands = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SegcliError(f"bands {text}: give 1-based band numbers, e.g. 3,2,1") from None
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise SegcliError(f"bands {text}: give one or three 1-based band numbers, e.g. 3,2,1")
    return bands


def parse_scale(text: str | None) -> tuple[float, float] | None:
    """`MIN,MAX` -> (MIN, MAX) with MIN < MAX."""
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise SegcliError(f"scale {text}: give MIN,MAX, e.g. 0,10000") from None
    if not low < high:
        raise SegcliError(f"scale {text}: MIN must be below MAX")
    return low, high


@dataclass
class RasterSource:
    """An open raster and the rules that turn its rows into 8-bit RGB (`rows`)."""

    path: Path
    dataset: object               # rasterio DatasetReader
    bands: tuple[int, ...]        # three 1-based band numbers
    scaling: list[dict] | None    # per band {"band", "low", "high", "rule"}; None: 8-bit as is

    @classmethod
    def open(cls, path: Path, bands: tuple[int, ...] | None = None,
             scale: tuple[float, float] | None = None) -> "RasterSource":
        rasterio = import_rasterio()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                dataset = rasterio.open(path)
        except rasterio.errors.RasterioError as exc:
            raise InputImageError(f"{printable(path)}: cannot read as a raster: {str(exc).splitlines()[0]}") from None
        chosen = _choose_bands(path, dataset.count, bands)
        source = cls(path, dataset, chosen, None)
        if scale is not None or any(dataset.dtypes[b - 1] != "uint8" for b in chosen):
            source.scaling = source._scaling(scale)
        return source

    @property
    def height(self) -> int:
        return self.dataset.height

    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def georeferenced(self) -> bool:
        return self.dataset.crs is not None or not self.dataset.transform.is_identity

    def close(self) -> None:
        self.dataset.close()

    def rows(self, top: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [top, top + count) as (HxWx3 uint8 RGB, HxW bool valid)."""
        from rasterio.windows import Window

        valid = self.dataset.dataset_mask(window=Window(0, top, self.width, count)) > 0
        return np.ascontiguousarray(self.planes(top, count).transpose(1, 2, 0)), valid

    def planes(self, top: int, count: int) -> np.ndarray:
        """Rows [top, top + count) as 3xHxW uint8 (the chosen bands, scaled), as rasterio reads them."""
        from rasterio.windows import Window

        data = self.dataset.read(list(self.bands), window=Window(0, top, self.width, count))
        return data if self.scaling is None else _stretch(data, self.scaling)

    def _scaling(self, scale: tuple[float, float] | None) -> list[dict]:
        if scale is not None:
            return [{"band": b, "low": scale[0], "high": scale[1], "rule": "given scale"} for b in self.bands]
        factor = max(1, -(-max(self.height, self.width) // OVERVIEW_SIDE))
        shape = (max(1, self.height // factor), max(1, self.width // factor))
        unique = sorted(set(self.bands))
        data = self.dataset.read(unique, out_shape=(len(unique), *shape))
        valid = self.dataset.dataset_mask(out_shape=shape) > 0
        result = []
        for band in self.bands:
            values = data[unique.index(band)][valid & np.isfinite(data[unique.index(band)])]
            low, high = (float(v) for v in np.percentile(values, PERCENTILES)) if values.size else (0.0, 1.0)
            if not high > low:
                high = low + 1.0
            result.append({"band": band, "low": low, "high": high,
                           "rule": f"{PERCENTILES[0]:g}-{PERCENTILES[1]:g} percentile of a {shape[1]}x{shape[0]} read"})
        return result


def _choose_bands(path: Path, count: int, bands: tuple[int, ...] | None) -> tuple[int, ...]:
    if bands is None:
        bands = (1, 2, 3) if count >= 3 else (1,)
    if max(bands) > count:
        raise InputImageError(f"{printable(path)}: bands {','.join(map(str, bands))}: the raster has {count} bands",
                              hint="choose others with --bands")
    return bands * 3 if len(bands) == 1 else bands


def _stretch(data: np.ndarray, scaling: list[dict]) -> np.ndarray:
    out = np.empty(data.shape, dtype=np.uint8)
    for index, rule in enumerate(scaling):
        band = data[index].astype(np.float64)
        scaled = (band - rule["low"]) * (255.0 / (rule["high"] - rule["low"]))
        out[index] = np.clip(np.nan_to_num(np.rint(scaled), nan=0.0), 0, 255).astype(np.uint8)
    return out
