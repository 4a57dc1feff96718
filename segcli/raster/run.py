"""`segcli predict scene.tif`: plan the outputs of raster inputs (refusing every problem before the
model loads), then segment each raster and write NAME.tif, NAME.geojson (--outputs polygons) and
NAME.json (last: it marks a complete set).

The rules of segcli.outputs.plan hold: no output replaces an input; two inputs whose outputs share
a name are refused; an existing output is replaced only with --overwrite and only when segcli wrote
it; --skip-existing keeps rasters whose outputs are all there. A raster that cannot be read is one
`failed: <path> <reason>` line and the run goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from segcli.atomic import atomic_write_json
from segcli.errors import InputImageError, OutputError, with_hint
from segcli.outputs.plan import _check_folders_inside
from segcli.raster.geotiff import LabelWriter, is_our_labels
from segcli.raster.polygons import MARK, label_polygons
from segcli.raster.source import RasterSource
from segcli.text import printable

GDAL_CACHE_MB = 128  # GDAL's block cache (default: 5% of the RAM) stays small: memory is bounded by the band
SUFFIXES = {"label": ".tif", "polygons": ".geojson", "json": ".json"}
HEAD_BYTES = 512  # a cut-short label GeoTIFF must keep this much of its start to be known as segcli's
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
    settings: dict | None = None                      # what the JSON records and --skip-existing compares
    checkpoint: tuple[str, str] | None = None         # (name, source) --skip-existing compares; None: not compared


@dataclass
class RasterRun:
    todo: list[tuple[Path, dict[str, Path]]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    processed: int = 0
    seconds: float = 0.0
    interrupted: bool = False     # Ctrl-C or SIGTERM stopped the run between rasters (--engine ray)
    signal: int | None = None     # the signal that stopped it


def _is_ours(kind: str, path: Path, paths: dict[str, Path]) -> bool:
    if kind == "label":
        return is_our_labels(path) or _cut_short(paths)
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    keys = {"raster", "checkpoint"} if kind == "json" else {MARK, "features"}
    return isinstance(document, dict) and keys <= document.keys()


def output_paths(relative: Path, options: RasterOptions) -> dict[str, Path]:
    """NAME.tif, NAME.geojson, NAME.json in --out, under the sub-folder the raster was found in."""
    folder = options.out_dir / relative.parent
    return {kind: folder / f"{relative.stem}{SUFFIXES[kind]}" for kind in options.kinds}


def plan_rasters(inputs: list[tuple[Path, Path]], options: RasterOptions) -> RasterRun:
    """Every output problem of the run, as OutputError, before any work. `inputs`: (raster, output name)."""
    if options.out_dir.exists() and not options.out_dir.is_dir():
        raise OutputError(f"output folder {printable(options.out_dir)} is a file", hint="choose another --out")
    real_inputs = {os.path.realpath(path) for path, _ in inputs}
    owners: dict[Path, Path] = {}
    run, existing, foreign_sets = RasterRun(), [], []
    for source, relative in inputs:
        paths = output_paths(relative, options)
        _check_folders_inside(options.out_dir, [(source, paths)])  # a linked sub-folder leading outside --out
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
                                                                          or not _is_ours(kind, path, paths))]
        if foreign:
            raise OutputError(f"{printable(foreign[0])} exists and was not written by segcli: not replaced",
                              hint="move it or choose another --out")
        complete = options.skip_existing and len(found) == len(paths) and not empty and _complete(paths)
        difference = _difference(paths["json"], options) if complete else None
        if complete and difference is None:
            run.skipped.append(source)
            continue
        if difference is not None:
            foreign_sets.append((paths["json"], difference))
        if found and not (options.overwrite or options.skip_existing):
            existing.append(found[0][1])
        run.todo.append((source, paths))
    _refuse(foreign_sets, existing, len(inputs), options)
    return run


def _refuse(foreign_sets: list, existing: list[Path], count: int, options: RasterOptions) -> None:
    if foreign_sets:
        summary, difference = foreign_sets[0]
        raise OutputError(f"{printable(options.out_dir)} holds the outputs of {len(foreign_sets)} rasters made with "
                          f"another checkpoint or other settings (e.g. {printable(summary)}: {difference}); "
                          "skip_existing keeps only this run's",
                          hint="pass --overwrite to replace them, or choose another --out")
    if existing:
        raise OutputError(f"{printable(options.out_dir)} already holds the outputs of {len(existing)} of "
                          f"{count} rasters (e.g. {printable(existing[0])}): neither overwrite nor skip_existing is set",
                          hint="pass --overwrite to replace them, or --skip-existing to keep them and segment the rest")


def _complete(paths: dict[str, Path]) -> bool:
    """The JSON (written last) is there and the label GeoTIFF has the size it recorded (not a half-written one)."""
    try:
        document = json.loads(paths["json"].read_bytes())
        return document.get("label_bytes") == paths["label"].stat().st_size
    except (OSError, ValueError, AttributeError):
        return False


def _head(path: Path) -> str:
    """sha256 of a label GeoTIFF's first HEAD_BYTES bytes (recorded in the JSON)."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()


def _cut_short(paths: dict[str, Path]) -> bool:
    """A half-written copy of the label GeoTIFF its set's JSON (segcli's) describes: shorter than the size
    recorded, at least HEAD_BYTES long and starting with the bytes recorded. Anything else is not ours."""
    if not _is_ours("json", paths["json"], paths):
        return False
    try:
        document = json.loads(paths["json"].read_bytes())
        size, recorded = paths["label"].stat().st_size, document.get("label_bytes")
        return isinstance(recorded, int) and HEAD_BYTES <= size < recorded and \
            _head(paths["label"]) == document.get("label_head")
    except (OSError, ValueError):
        return False


def _difference(summary_path: Path, options: RasterOptions) -> str | None:
    """How a complete set's JSON differs from this run (checkpoint, settings); None: it is this run's."""
    document = json.loads(summary_path.read_bytes())
    if options.checkpoint is not None:
        recorded = (document.get("checkpoint"), document.get("checkpoint_source"))
        if recorded != tuple(options.checkpoint):
            return f"checkpoint {recorded[0]} ({recorded[1]}), this run {options.checkpoint[0]}"
    if options.settings is not None:
        wanted, recorded = json.loads(json.dumps(options.settings)), document.get("settings") or {}
        changed = sorted(key for key in set(wanted) | set(recorded) if wanted.get(key) != recorded.get(key))
        if changed:
            return ", ".join(f"{key} {json.dumps(recorded.get(key))}, this run {json.dumps(wanted.get(key))}"
                             for key in changed[:3])
    return None


def planned_names(run: RasterRun) -> dict[Path, set[str]]:
    """The file names of the planned outputs, per folder (whose `.NAME.<hex>.tmp` leftovers may be removed)."""
    names: dict[Path, set[str]] = {}
    for _, targets in run.todo:
        for path in targets.values():
            names.setdefault(path.parent, set()).add(path.name)
    return names


def run_rasters(run: RasterRun, engine, policy, options: RasterOptions, say: Callable[[str], None]) -> RasterRun:
    """Segment the planned rasters one after another; unreadable ones become `failed` entries.

    The first Ctrl-C or SIGTERM stops the run after the raster being written (`run.interrupted`); a second
    stops at once, and that raster's label GeoTIFF temporary is removed (LabelWriter.discard)."""
    from segcli.pipeline.interrupts import StopRequests

    started, wall_started = time.perf_counter(), time.time()
    with StopRequests(lambda number: say("stopping after the raster in hand (press Ctrl-C again to stop at once); "
                                         "a rerun with --skip-existing resumes")) as stop:
        current = None  # the targets of the raster being segmented
        try:
            for path, targets in run.todo:
                current = targets
                problem = segment_path(path, targets, engine, policy, options, say)
                current = None
                if problem is None:
                    run.processed += 1
                else:
                    run.failed.append((path, problem))
                    say(f"failed: {problem}")
                if stop.requested:
                    break
        except KeyboardInterrupt:
            stop.request()
            if current is not None:  # the raster the second signal cut off
                run.processed += settle_set(current, wall_started)
        run.interrupted, run.signal = stop.requested, stop.signal
    run.seconds = time.perf_counter() - started
    return run


def settle_set(targets: dict[str, Path | str], since: float) -> int:
    """After a stop at once: 1 when the set is complete (its JSON, written last, landed since `since`); else 0,
    and what was written of it since `since` (a label GeoTIFF without its JSON) is removed."""
    if _written_since(targets["json"], since):
        return 1
    for target in targets.values():
        if _written_since(target, since):
            with contextlib.suppress(FileNotFoundError):
                os.remove(target)
    return 0


def _written_since(path: Path | str, since: float) -> bool:
    try:
        return os.stat(path).st_mtime >= since
    except OSError:
        return False


def segment_path(path: Path, targets: dict[str, Path], engine, policy, options: RasterOptions,
                 say: Callable[[str], None]) -> str | None:
    """Segment one raster and write its outputs; the one-line reason when it cannot be read (else None)."""
    from segcli.raster.source import import_rasterio

    with import_rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        try:
            source = RasterSource.open(path, options.bands, options.scale)
        except InputImageError as exc:
            return with_hint(exc)
        try:
            if not source.georeferenced:
                say(f"{printable(path)}: {NO_GEOREFERENCE}")
            _segment_one(source, targets, engine, policy, options)
        finally:
            source.close()
    return None


def _segment_one(source: RasterSource, targets: dict[str, Path], engine, policy, options: RasterOptions) -> None:
    from segcli.raster.segment import segment_raster

    record = engine.record
    label_path = targets["label"]
    label_path.parent.mkdir(parents=True, exist_ok=True)  # --out, and the sub-folder the raster was found in
    writer = LabelWriter(label_path, source.dataset, record.categories, record.palette, record.name, cog=options.cog)
    try:
        stats = segment_raster(engine, source, writer.write, policy)
        writer.commit()
    finally:
        writer.discard()
    if "polygons" in targets:
        atomic_write_json(targets["polygons"], label_polygons(label_path, record.categories, options.simplify))
    if "json" in targets:
        document = summary(source, targets, record, policy, options, stats)
        document.update(checkpoint_source=engine.source, settings=options.settings,
                        label_bytes=os.stat(label_path).st_size, label_head=_head(label_path))  # --skip-existing
        atomic_write_json(targets["json"], document)


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
