"""The label GeoTIFF: uint8 class indices (255: void), the input's CRS, transform and size, tiled
512x512 + deflate, the checkpoint's colour map, class names in the tags.

It is written to a temporary beside the target (segcli.atomic's `.NAME.<hex>.tmp` names), fsynced,
and renamed over the target, so the target is never half-written. `cog=True` copies the finished
temporary through GDAL's COG driver (Cloud Optimized GeoTIFF, overviews included) before the rename.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from segcli.atomic import create_temporary
from segcli.errors import OutputError
from segcli.palettes import palette_colors
from segcli.raster.source import import_rasterio
from segcli.text import printable

VOID = 255
BLOCK = 512
WRITER_TAG = "segcli_labels"  # present in every label GeoTIFF segcli writes (what --overwrite may replace)


def label_profile(dataset) -> dict:
    """The output profile: one uint8 band over the input's grid, tiled and deflated."""
    profile = {"driver": "GTiff", "width": dataset.width, "height": dataset.height, "count": 1, "dtype": "uint8",
               "crs": dataset.crs, "transform": dataset.transform, "nodata": VOID, "compress": "deflate",
               "BIGTIFF": "IF_SAFER"}  # past 4 GB uncompressed (~65,000 px square), whatever deflate makes of it
    if dataset.width >= BLOCK and dataset.height >= BLOCK:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    return profile


def colormap(palette, num_classes: int) -> dict[int, tuple[int, int, int, int]]:
    colours = palette_colors(palette, num_classes)
    table = {index: (*colours[index], 255) for index in range(num_classes)}
    table[VOID] = (0, 0, 0, 0)
    return table


def is_our_labels(path: Path) -> bool:
    """A GeoTIFF segcli wrote (its writer tag), so --overwrite may replace it."""
    rasterio = import_rasterio()
    try:
        with warnings.catch_warnings():  # a cut-short file reads as ungeoreferenced: no warning line for that
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as dataset:
                return WRITER_TAG in dataset.tags()
    except rasterio.errors.RasterioError:
        return False


class LabelWriter:
    """Write label rows band by band; `commit` renames the finished file over the target."""

    def __init__(self, path: Path, dataset, categories: tuple[str, ...], palette, checkpoint: str,
                 cog: bool = False) -> None:
        self.rasterio = import_rasterio()
        self.path, self.cog = Path(path), cog
        self.temporaries: list[str] = []
        self.temporary = self._new_temporary()
        try:
            with warnings.catch_warnings():  # no georeferencing: the run already says so in one line of its own
                warnings.simplefilter("ignore", self.rasterio.errors.NotGeoreferencedWarning)
                self.dst = self.rasterio.open(self.temporary, "w", **label_profile(dataset))
            self.dst.write_colormap(1, colormap(palette, len(categories)))
            self.dst.update_tags(**{WRITER_TAG: "class indices; 255: void (nodata)",
                                    "segcli_classes": json.dumps(list(categories)), "segcli_checkpoint": checkpoint})
            self.dst.set_band_description(1, "class index")
        except (OSError, self.rasterio.errors.RasterioError) as exc:
            self.discard()
            raise OutputError(f"cannot write {printable(self.path)}: {str(exc).splitlines()[0]}") from None

    def _new_temporary(self) -> str:
        try:
            fd, name = create_temporary(self.path)
        except OSError as exc:
            raise OutputError(f"cannot write {printable(self.path)}: {exc.strerror or exc}") from None
        os.close(fd)
        self.temporaries.append(name)
        return name

    def write(self, top: int, labels: np.ndarray) -> None:
        from rasterio.windows import Window

        self.dst.write(labels[None], window=Window(0, top, labels.shape[1], labels.shape[0]))

    def commit(self) -> None:
        """Close, (COG copy,) fsync, rename over the target."""
        try:
            self.dst.close()
            final = self.temporary
            if self.cog:
                import rasterio.shutil

                final = self._new_temporary()
                rasterio.shutil.copy(self.temporary, final, driver="COG", compress="DEFLATE", blocksize=BLOCK,
                                     overview_resampling="NEAREST", BIGTIFF="IF_SAFER")
            with open(final, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(final, self.path)
            self.temporaries.remove(final)
        except (OSError, self.rasterio.errors.RasterioError) as exc:
            raise OutputError(f"cannot write {printable(self.path)}: {str(exc).splitlines()[0]}") from None
        finally:
            self.discard()

    def discard(self) -> None:
        """Close and remove the temporaries (on failure or after the rename)."""
        dst = getattr(self, "dst", None)
        if dst is not None and not dst.closed:
            dst.close()
        for name in self.temporaries:
            if os.path.lexists(name):
                os.unlink(name)
        self.temporaries.clear()
