"""`segcli predict scene.tif`: plan the outputs of raster inputs (refusing every problem before the
model loads), then segment each raster and write NAME.tif, NAME.geojson (--outputs polygons) and
NAME.json (last: it marks a complete set).

The rules of segcli.outputs.plan hold: no output replaces an input; two inputs whose outputs share
a name are refused; an existing output is replaced only with --overwrite and only when segcli wrote
it; --skip-existing keeps rasters whose outputs are all there. A raster that cannot be read is one
`failed: <path> <reason>` line and the run goes on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from segcli.atomic import atomic_write_json
from segcli.errors import InputImageError, OutputError, with_hint
from segcli.raster.geotiff import LabelWriter, is_our_labels
from segcli.raster.polygons import MARK, label_polygons
from segcli.raster.source import RasterSource
from segcli.text import printable

GDAL_CACHE_MB = 128  # GDAL's block cache (default: 5% of the RAM) stays small: memory is bounded by the band
SUFFIXES = {"label": ".tif", "polygons": ".geojson", "json": ".json"}
NO_GEOREFERENCE = "the raster has no georeferencing (no CRS, no geotransform): outputs are in pixel coordinates"


@dataclass(frozen=True)
class RasterOptions:
    out_dir: Path
    kinds: tuple[str, ...] = ("label", "json")       # of SUFFIXES; json last
    overwrite: bool = False
    skip_existing: bool = False
    bands: tuple[int, ...] | None = None
    scale: tuple[float, float] | None = None
    cog: bool = False
    simplify: float | None = None


@dataclass
class RasterRun:
    todo: list[tuple[Path, dict[str, Path]]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    processed: int = 0
    seconds: float = 0.0


def _is_ours(kind: str, path: Path) -> bool:
    if kind == "label":
        return is_our_labels(path)
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    keys = {"raster", "checkpoint"} if kind == "json" else {MARK, "features"}
    return isinstance(document, dict) and keys <= document.keys()


def plan_rasters(inputs: list[Path], options: RasterOptions) -> RasterRun:
    """Every output problem of the run, as OutputError, before any work."""
    if options.out_dir.exists() and not options.out_dir.is_dir():
        raise OutputError(f"output folder {printable(options.out_dir)} is a file", hint="choose another --out")
    real_inputs = {os.path.realpath(path) for path in inputs}
    owners: dict[Path, Path] = {}
    run, existing = RasterRun(), []
    for source in inputs:
        paths = {kind: options.out_dir / f"{source.stem}{SUFFIXES[kind]}" for kind in options.kinds}
        for kind, path in paths.items():
            if owners.setdefault(path, source) != source:
                raise OutputError(f"{printable(owners[path])} and {printable(source)} would both write "
                                  f"{printable(path)}: rename one, or segment them in separate runs",
                                  hint="give each run its own --out")
            if os.path.realpath(path) in real_inputs:
                raise OutputError(f"{printable(path)} is an input of this run, and the {kind} output of "
                                  f"{printable(source)} would replace it: write the outputs to another folder",
                                  hint="choose another --out")
        found = [(kind, path) for kind, path in paths.items() if os.path.lexists(path)]
        # an empty file holds nothing anyone could lose (what a power failure leaves of a new output)
        empty = [path for kind, path in found if path.is_file() and path.stat().st_size == 0]
        foreign = [path for kind, path in found if path not in empty and (not path.is_file() or path.is_symlink()
                                                                          or not _is_ours(kind, path))]
        if foreign:
            raise OutputError(f"{printable(foreign[0])} exists and was not written by segcli: not replaced",
                              hint="move it or choose another --out")
        if found and options.skip_existing and len(found) == len(paths) and not empty:
            run.skipped.append(source)
        elif found and not (options.overwrite or options.skip_existing):
            existing.append(found[0][1])
        else:
            run.todo.append((source, paths))
    if existing:
        raise OutputError(f"{printable(options.out_dir)} already holds the outputs of {len(existing)} of "
                          f"{len(inputs)} rasters (e.g. {printable(existing[0])}): neither overwrite nor skip_existing is set",
                          hint="pass --overwrite to replace them, or --skip-existing to keep them and segment the rest")
    return run


def run_rasters(run: RasterRun, engine, policy, options: RasterOptions, say: Callable[[str], None]) -> RasterRun:
    """Segment the planned rasters one after another; unreadable ones become `failed` entries."""
    from segcli.raster.source import import_rasterio

    started = time.perf_counter()
    with import_rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        for path, targets in run.todo:
            try:
                source = RasterSource.open(path, options.bands, options.scale)
            except InputImageError as exc:
                run.failed.append((path, with_hint(exc)))
                say(f"failed: {with_hint(exc)}")
                continue
            try:
                if not source.georeferenced:
                    say(f"{printable(path)}: {NO_GEOREFERENCE}")
                _segment_one(source, targets, engine, policy, options)
                run.processed += 1
            finally:
                source.close()
    run.seconds = time.perf_counter() - started
    return run


def _segment_one(source: RasterSource, targets: dict[str, Path], engine, policy, options: RasterOptions) -> None:
    from segcli.raster.segment import segment_raster

    record = engine.record
    options.out_dir.mkdir(parents=True, exist_ok=True)
    label_path = targets.get("label")
    writer = LabelWriter(label_path, source.dataset, record.categories, record.palette, record.name, cog=options.cog)
    try:
        stats = segment_raster(engine, source, writer.write, policy)
        writer.commit()
    finally:
        writer.discard()
    if "polygons" in targets:
        atomic_write_json(targets["polygons"], label_polygons(label_path, record.categories, options.simplify))
    if "json" in targets:
        atomic_write_json(targets["json"], summary(source, targets, record, policy, options, stats))


def summary(source: RasterSource, targets: dict[str, Path], record, policy, options: RasterOptions,
            stats: dict) -> dict:
    dataset = source.dataset
    pixels = stats["class_pixels"]
    megapixels = source.width * source.height / 1e6
    document = {
        "input": str(source.path), "outputs": {kind: path.name for kind, path in targets.items()},
        "checkpoint": record.name, "categories": list(record.categories),
        "raster": {"width": source.width, "height": source.height, "bands": list(source.bands),
                   "dtypes": [dataset.dtypes[b - 1] for b in source.bands],
                   "crs": dataset.crs.to_string() if dataset.crs else None,
                   "transform": list(dataset.transform)[:6], "georeferenced": source.georeferenced,
                   "nodata": dataset.nodata, "cog": options.cog},
        "scaling": source.scaling or "8-bit values used as they are",
        "tiling": {"tile_size": policy.tile_size, "overlap": policy.overlap},
        "classes": [{"index": i, "name": name, "pixels": pixels[i]} for i, name in enumerate(record.categories)],
        "classes_present": [{"index": i, "name": name} for i, name in enumerate(record.categories) if pixels[i]],
        "void_pixels": stats["void_pixels"],
        "seconds": round(stats["seconds"], 3),
        "megapixels_per_second": round(megapixels / stats["seconds"], 3) if stats["seconds"] else None,
    }
    if not source.georeferenced:
        document["note"] = NO_GEOREFERENCE
    return document
