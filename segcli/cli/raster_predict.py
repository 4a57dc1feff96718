"""`segcli predict` on rasters: GeoTIFFs with georeferencing (or TIFFs above the pixel limit) named on the
command line go to segcli.raster (label GeoTIFF, JSON, GeoJSON polygons) instead of the image pipeline.

Every flag the raster path cannot honour is a usage error (exit 2) raised before the model loads:
--engine ray, --tta, --crf, --report, --classes, --out -, --tile off, image-only --outputs.
Folders and globs are not searched for rasters (name each raster); rasters and plain images go in
separate runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from segcli.cli.options import bundle

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


def raster_inputs(inputs, max_pixels: int | None, outputs: str | None, raster: RasterFlags) -> list[Path] | None:
    """The inputs as rasters when they go through the raster path, else None (today's image pipeline)."""
    from segcli.errors import MissingDependencyError
    from segcli.imageio import DEFAULT_MAX_PIXELS
    from segcli.raster.source import RASTER_SUFFIXES, import_rasterio, takes_raster_path

    asked = raster.given or "polygons" in _listed(outputs)
    tiffs = [Path(item) for item in inputs if Path(item).suffix.lower() in RASTER_SUFFIXES and Path(item).is_file()]
    if not tiffs:
        if asked:
            raise click.UsageError("--bands, --scale, --cog, --simplify and --outputs polygons apply to GeoTIFF inputs")
        return None
    if not asked:
        try:
            import_rasterio()
        except MissingDependencyError:  # plain TIFFs keep the image pipeline
            return None
    rasters = tiffs if asked else [path for path in tiffs if takes_raster_path(path, max_pixels or DEFAULT_MAX_PIXELS)]
    if not rasters:
        return None
    if len(rasters) != len(inputs):
        raise click.UsageError("rasters (GeoTIFFs) and other images go in separate runs; name each raster "
                               "(folders are not searched for rasters)")
    import_rasterio()  # MissingDependencyError (one line, the pip hint) when the raster path was asked for
    return list(dict.fromkeys(rasters))  # a raster named twice is segmented once


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


def predict_rasters(rasters: list[Path], options, policy, load_engine: Callable, quiet: bool) -> None:
    """Plan (OutputError before the model loads), segment, report; exit 1 when a raster failed."""
    from rich.console import Console
    from rich.markup import escape

    from segcli.raster.run import plan_rasters, run_rasters
    from segcli.text import printable

    console = Console(stderr=True, quiet=quiet, soft_wrap=True)
    run = plan_rasters(rasters, options)
    if run.todo:
        engine = load_engine(console)
        run_rasters(run, engine, policy, options, lambda line: console.print(escape(line), highlight=False))
    parts = [f"{run.processed} segmented"]
    if run.skipped:
        parts.append(f"{len(run.skipped)} skipped (outputs exist)")
    if run.failed:
        parts.append(f"{len(run.failed)} failed")
    click.echo(f"{', '.join(parts)} in {run.seconds:.1f} s -> {printable(options.out_dir)}", err=True)
    if run.failed:
        raise SystemExit(1)
