"""`segcli predict` on rasters: GeoTIFFs with georeferencing (or TIFFs above the pixel limit) named on the
command line go to segcli.raster (label GeoTIFF, JSON, GeoJSON polygons) instead of the image pipeline.

Every flag the raster path cannot honour is a usage error (exit 2) raised before the model loads:
--tta, --crf, --report, --classes, --out -, --tile off, image-only --outputs. Folders and globs are
searched for rasters (segcli.raster.inputs has the rule); rasters found with plain images make a mixed
run (both parts planned before the model loads, one model, one summary line: segcli.cli.mixed_run).
--engine ray spreads the rasters over Ray actors, one raster per task (segcli.distributed.rasters).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from segcli.cli.options import bundle
from segcli.text import printable

RASTER_OUTPUTS = ("label", "polygons", "json")


@dataclass(frozen=True)
class RasterFlags:
    """--bands, --scale, --cog and --simplify, parsed (raster inputs only)."""

    bands: tuple[int, ...] | None = None     # 1-based, one or three
    scale: tuple[float, float] | None = None
    cog: bool = False
    simplify: float | None = None

    @property
    def given(self) -> bool:
        return self.bands is not None or self.scale is not None or self.cog or self.simplify is not None


def build_raster_flags(bands: str | None, scale: str | None, cog: bool, simplify: float | None) -> RasterFlags:
    """RasterFlags of the options; a bad --bands or --scale is a usage error (exit 2)."""
    if bands is None and scale is None:
        return RasterFlags(cog=cog, simplify=simplify)
    from segcli.errors import SegcliError
    from segcli.raster.source import parse_bands, parse_scale

    try:
        return RasterFlags(parse_bands(bands), parse_scale(scale), cog, simplify)
    except SegcliError as exc:
        raise click.UsageError(f"--{exc}") from None  # "bands 5,x: ..." names the option without its dashes


raster_options = bundle("raster", [
    click.option("--bands", default=None, metavar="LIST",
                 help="Rasters: 1-based bands to use as R,G,B (e.g. 3,2,1) or one band repeated "
                      "[default: the first three, or the only one]."),
    click.option("--scale", default=None, metavar="MIN,MAX",
                 help="Rasters: map MIN..MAX to 0..255 in every band [default: 8-bit as is; other types "
                      "stretched from the 2nd to the 98th percentile of each band]."),
    click.option("--cog", is_flag=True, help="Rasters: write the label GeoTIFF as a Cloud Optimized GeoTIFF."),
    click.option("--simplify", type=click.FloatRange(min=0), default=None, metavar="TOLERANCE",
                 help="Rasters with --outputs polygons: Douglas-Peucker tolerance in map units."),
], build_raster_flags)


def raster_inputs(inputs, max_pixels: int | None, outputs: str | None, raster: RasterFlags,
                  out_dir: Path = Path("segcli-out")):
    """The inputs as a RasterScan when they go through the raster path, else None (the image pipeline).

    Which files are rasters: segcli.raster.inputs (also in folders and globs); rasters and other images
    found together come back as one scan (`scan.images`: the others), a mixed run."""
    from segcli.errors import MissingDependencyError
    from segcli.imageio import DEFAULT_MAX_PIXELS
    from segcli.raster.source import import_rasterio

    asked = raster.given or "polygons" in _listed(outputs)
    if not any(_may_hold_rasters(Path(item)) for item in inputs):
        if asked:
            raise click.UsageError("--bands, --scale, --cog, --simplify and --outputs polygons apply to GeoTIFF inputs")
        return None
    try:
        import_rasterio()
    except MissingDependencyError:
        if asked:
            raise  # one line, the pip hint: the raster path was asked for
        return None  # plain TIFFs keep the image pipeline
    from segcli.errors import InputImageError
    from segcli.raster.inputs import scan_rasters

    try:
        scan = scan_rasters(inputs, out_dir, max_pixels or DEFAULT_MAX_PIXELS, every_tiff=asked)
    except InputImageError:
        if asked:
            raise
        return None  # the image pipeline finds the same problem and says it as it always has
    if not scan.rasters:
        if asked:
            raise click.UsageError("--bands, --scale, --cog, --simplify and --outputs polygons apply to GeoTIFF inputs")
        return None
    return scan


def _may_hold_rasters(path: Path) -> bool:
    """A .tif/.tiff file, or a folder or unexpanded glob with one: names only (no file opened), so a folder of
    photos costs one quick walk (about 1 us a file) before the image pipeline's own."""
    import glob

    if path.is_dir():
        return _folder_holds_tiff(path)
    if path.exists():
        return _is_tiff_name(path.name) and path.is_file()
    if set("*?[") & set(str(path)):
        return any(_is_tiff_name(match) or (os.path.isdir(match) and _folder_holds_tiff(Path(match)))
                   for match in glob.iglob(str(path), recursive=True))
    return False


def _is_tiff_name(name: str) -> bool:
    return name.lower().endswith((".tif", ".tiff"))


def _folder_holds_tiff(folder: Path) -> bool:
    """Any .tif/.tiff under `folder` (links to folders followed, each real folder once)."""
    seen: set[tuple[int, int]] = set()
    for root, folders, files in os.walk(folder, followlinks=True):
        try:
            status = os.stat(root)
        except OSError:
            continue
        if (status.st_dev, status.st_ino) in seen:
            folders[:] = []
            continue
        seen.add((status.st_dev, status.st_ino))
        if any(_is_tiff_name(name) for name in files):
            return True
    return False


def _listed(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def check_raster_flags(outputs, out_dir: Path, tiling, refused: dict[str, bool]):
    """(kinds, TilingPolicy) for the raster run; click.UsageError for what it cannot do."""
    for flag, given in refused.items():
        if given:
            raise click.UsageError(f"{flag} is not supported for raster inputs")
    if str(out_dir) == "-":
        raise click.UsageError("rasters are written into an --out folder, not to stdout")
    listed = _listed(outputs)
    unknown = [kind for kind in listed if kind not in RASTER_OUTPUTS]
    if unknown:
        raise click.UsageError(f"--outputs {unknown[0]}: rasters write {', '.join(RASTER_OUTPUTS)}")
    kinds = tuple(kind for kind in RASTER_OUTPUTS if kind in ("label", "json") or kind in listed)
    if tiling.mode == "off":
        raise click.BadParameter("a raster is always segmented in windows: use auto or a tile size",
                                 param_hint="'--tile'")
    return kinds, tiling


def predict_rasters(scan, options, policy, load_engine: Callable, quiet: bool, on_ray: Callable | None = None) -> None:
    """Plan (OutputError before the model loads), segment, report; exit 1 when a raster failed, 130/143 when
    Ctrl-C or SIGTERM stopped a Ray run.

    `on_ray(run, options, console)`: segment the planned rasters on Ray actors instead of `load_engine`'s engine here."""
    from rich.console import Console

    console = Console(stderr=True, quiet=quiet, soft_wrap=True)
    run = plan_raster_part(scan, options, console)
    execute_raster_part(run, options, policy, load_engine, console, on_ray)
    line = f"{', '.join(summary_parts(run.processed, len(run.skipped), len(run.failed)))} in {run.seconds:.1f} s " \
           f"-> {printable(options.out_dir)}"
    end_run(line, run.failed, quiet, run.signal if run.interrupted else None)


def plan_raster_part(scan, options, console):
    """The RasterRun of the scan's rasters (OutputError before the model loads); the inputs that fail alone added."""
    from segcli.raster.run import plan_rasters

    say = sayer(console)
    for line in scan.skipped:
        say(f"skipped: {line}")
    run = plan_rasters(scan.rasters, options)
    for path, message in scan.problems:
        run.failed.append((path, message))
        say(f"failed: {message}")
    return run


def execute_raster_part(run, options, policy, load_engine: Callable, console, on_ray: Callable | None = None):
    """Segment the planned rasters here (`load_engine(console)`'s engine) or on Ray (`on_ray`), in the locked --out.

    A Ray run stopped by Ctrl-C or SIGTERM leaves no temporaries: its actors are gone once `on_ray` returns."""
    from segcli.outputs.folder import OutputFolder
    from segcli.raster.run import planned_names, run_rasters

    say = sayer(console)
    if not run.todo:
        return run
    with OutputFolder(options.out_dir) as folder:  # locked: another run's live temporaries are left alone
        removed = folder.remove_stale_temporaries(planned_names(run))
        if removed:
            say(f"removed {len(removed)} temporary files an interrupted run left behind")
        if on_ray is not None:
            on_ray(run, options, console)
            if run.interrupted:  # the rasters the stopped actors were writing
                folder.remove_stale_temporaries(planned_names(run))
        else:
            engine = load_engine(console)
            run_rasters(run, engine, policy, options, say)
            if engine.policy is not None and engine.policy.choices:  # --precision auto on CUDA: what ran
                say(f"execution policy: {engine.policy.describe()}")
    return run


def sayer(console) -> Callable[[str], None]:
    from rich.markup import escape

    return lambda line: console.print(escape(line), highlight=False)


def summary_parts(segmented: int, skipped: int, failed: int, segmented_detail: str = "") -> list[str]:
    """The pieces of a run's last line: "N segmented", "N skipped (outputs exist)", "N failed"."""
    parts = [f"{segmented} segmented{segmented_detail}"]
    if skipped:
        parts.append(f"{skipped} skipped (outputs exist)")
    if failed:
        parts.append(f"{failed} failed")
    return parts


def end_run(line: str, failed: list, quiet: bool, stopped_by: int | None) -> None:
    """Print the last line (after the `failed:` lines a quiet run held back); exit 1 on failures, 130/143 when stopped."""
    from segcli.pipeline.interrupts import exit_code

    if stopped_by is not None:
        click.echo(f"{'Terminated' if stopped_by == signal.SIGTERM else 'Interrupted'}: {line}", err=True)
        raise SystemExit(exit_code(stopped_by))
    if quiet:  # otherwise each failure was shown as it happened
        for _, message in failed:
            click.echo(f"failed: {printable(message)}", err=True)
    click.echo(line, err=True)
    if failed:
        raise SystemExit(1)


def raster_settings(flags: dict, kinds, cluster, inference, policy):
    """({settings, checkpoint} for RasterOptions, the Ray runner or None).

    `settings` is what a raster's JSON records and --skip-existing compares; the checkpoint (name, source)
    is resolved (not loaded) only when --skip-existing or --engine ray needs it."""
    from segcli.cli.predict_options import tile_setting

    raster = flags["raster"]
    settings = {"precision": flags["precision"], "tile": tile_setting(policy), "tile_overlap": policy.overlap,
                "multiscale": flags["multiscale"], "bands": raster.bands, "scale": raster.scale, "cog": raster.cog,
                "simplify": raster.simplify if "polygons" in kinds else None}
    resolved, on_ray = None, None
    if cluster is not None:
        from segcli.distributed.settings import EngineSettings

        engine = EngineSettings.resolve(flags["model"], flags["weights"], flags["download"], device=flags["device"],
                                        options=inference)
        resolved = engine.checkpoint

        def on_ray(run, options, console):
            from segcli.distributed.rasters import run_rasters_on_ray

            run_rasters_on_ray(run, engine, cluster, policy, options, console)
    elif flags["skip_existing"]:
        from segcli.checkpoints.resolve import resolve_checkpoint

        resolved = resolve_checkpoint(flags["model"], flags["weights"], allow_download=flags["download"])
    identity = (resolved.record.name, resolved.describe()) if resolved is not None else None
    return {"settings": settings, "checkpoint": identity}, on_ray
