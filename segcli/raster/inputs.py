"""Which inputs are rasters: files named on the command line, and files found in folders and globs.

The rule (one for named files, folders and globs): a .tif/.tiff file is a raster when it carries a CRS
or a geotransform, or has more pixels than --max-pixels; with a raster flag (--bands, --scale, --cog,
--simplify, --outputs polygons) every .tif/.tiff is one. A .tif that rasterio cannot open goes with
the rasters when there are any (it fails alone, one `failed:` line), else with the images. A label
GeoTIFF segcli wrote (its writer tag) found in a folder or glob is an earlier run's output: skipped,
and said so. Rasters and other images found together make a mixed run (the caller plans both parts);
a raster found in a folder keeps its sub-folder in the output names, as images do.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from segcli.inputs import ImageSource
from segcli.raster.geotiff import WRITER_TAG
from segcli.raster.source import RASTER_SUFFIXES, import_rasterio


@dataclass
class RasterScan:
    """The inputs sorted out: rasters as (path, output name), other images, entries that fail alone."""

    rasters: list[tuple[Path, Path]] = field(default_factory=list)
    others: list[Path] = field(default_factory=list)
    images: list[ImageSource] = field(default_factory=list)  # the others with their output names
    problems: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _kind(path: Path, max_pixels: int, every_tiff: bool) -> str:
    """"raster", "ours" (a label GeoTIFF segcli wrote), "unreadable" or "image"."""
    if path.suffix.lower() not in RASTER_SUFFIXES:
        return "image"
    rasterio = import_rasterio()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path) as src:
                if WRITER_TAG in src.tags():
                    return "ours"
                georeferenced = src.crs is not None or not src.transform.is_identity
                return "raster" if every_tiff or georeferenced or src.width * src.height > max_pixels else "image"
    except rasterio.errors.RasterioError:
        return "unreadable"


def scan_rasters(inputs: Sequence[str | Path], out_dir: Path, max_pixels: int, every_tiff: bool) -> RasterScan:
    """Find the inputs (segcli.inputs: folders recursively, globs; the output folder not walked) and sort them."""
    from segcli.inputs import scan_inputs

    found = scan_inputs(inputs, exclude=[out_dir])
    named = {Path(item) for item in inputs}
    scan = RasterScan(problems=list(found.problems), skipped=list(found.skipped))
    unreadable: list[ImageSource] = []
    earlier = 0
    for source in found.sources:
        kind = _kind(source.path, max_pixels, every_tiff)
        if kind == "ours" and source.path not in named:
            earlier += 1
        elif kind in ("raster", "ours"):
            scan.rasters.append((source.path, source.relative))
        elif kind == "unreadable":
            unreadable.append(source)
        else:
            scan.others.append(source.path)
            scan.images.append(source)
    if earlier:
        scan.skipped.append(f"{earlier} label GeoTIFF{'s' * (earlier != 1)}: outputs of an earlier segcli run")
    if scan.rasters:
        scan.rasters.extend((source.path, source.relative) for source in unreadable)
    else:
        scan.others.extend(source.path for source in unreadable)
        scan.images.extend(unreadable)
    return scan
