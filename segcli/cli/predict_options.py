"""`predict`'s tiling and test-time augmentation options, as typed values: `tiling` (a TilingPolicy)
and `tta` (TTAParams or None). segcli.tiling (torch) is imported only when the command runs."""

from __future__ import annotations

from typing import Callable

import click

from segcli.cli.options import bundle


def build_tiling(tile: str, tile_overlap: float):
    """The TilingPolicy of --tile and --tile-overlap; a bad value is a usage error (exit 2)."""
    from segcli.errors import SegcliError
    from segcli.tiling import TilingPolicy

    try:
        return TilingPolicy.parse(tile, overlap=tile_overlap)
    except SegcliError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1], param_hint="'--tile'") from None


def tile_setting(tiling) -> str:
    """--tile as a set's JSON records it (what --skip-existing compares): auto, off or the tile side."""
    return str(tiling.tile_size) if tiling.mode == "size" else tiling.mode


def _tta_callback(ctx: click.Context, param: click.Parameter, value: bool):
    if not value:
        return None
    from segcli.tiling import TTAParams

    return TTAParams()


_tiling = bundle("tiling", [
    click.option("--tile", default="auto", show_default=True, metavar="auto|off|SIZE",
                 help="Sliding-window inference: auto tiles inputs above 4 MP with 1024 px tiles; SIZE forces tiles."),
    click.option("--tile-overlap", type=click.FloatRange(0.0, 0.9), default=0.25, show_default=True,
                 help="Fraction of a tile shared with its neighbour (blended, no seams)."),
], build_tiling)
tta_option = click.option("--tta", is_flag=True, callback=_tta_callback,
                    help="Test-time augmentation: scales 0.75/1/1.25 + horizontal flip, averaged.")


def tiling_options(func: Callable) -> Callable:
    """--tile and --tile-overlap (-> `tiling`), --tta (-> `tta`)."""
    return _tiling(tta_option(func))
