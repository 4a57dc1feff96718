"""`segcli predict DIR` where DIR holds plain images and rasters: one run in two parts.

The image part is a FolderRun (segcli.pipeline.run), the raster part a RasterRun (segcli.raster.run);
each keeps its own rules (--skip-existing, --overwrite, which flags apply). Both are planned before the
model loads, and then checked against each other: an image and a raster that would write the same file
(`a.jpg` and `a.tif` both write `OUT/a.json`) are refused up front, naming both. (An output of one part
that is an input of the other exists and is not segcli's: each part's own plan refuses it.) One model
serves both parts; one line sums the run up.
"""

from __future__ import annotations

import os
from pathlib import Path

from segcli.cli.raster_predict import end_run, summary_parts
from segcli.errors import OutputError
from segcli.text import printable


def check_crossing(image_run, image_kinds, rasters: list[tuple[Path, Path]], raster_options) -> None:
    """OutputError when an image and a raster would write the same file, naming both.

    `image_run`: the planned FolderRun; `rasters`: (raster, output name) as the raster part planned them."""
    from segcli.raster.run import output_paths

    written: dict[str, Path] = {}  # real path of a raster output -> its raster
    for raster, relative in rasters:
        for path in output_paths(relative, raster_options).values():
            written[os.path.realpath(path)] = raster
    for source in _image_sources(image_run):
        for path in image_run.plan.paths_for(source.relative, image_kinds).values():
            raster = written.get(os.path.realpath(path))
            if raster is not None:
                raise OutputError(f"{printable(source.path)} and {printable(raster)} would both write "
                                  f"{printable(path)}: rename one, or segment them in separate runs",
                                  hint="give each run its own --out")


def _image_sources(image_run) -> list:
    work = image_run.work
    return [item.source for item in work.todo] + list(work.skipped) + [source for source, _ in work.failed]


def finish_mixed(images, rasters, out_dir: Path, quiet: bool) -> None:
    """The run's one last line, counting both parts; exit 1 when anything failed, 130/143 when stopped."""
    detail = f" ({_count(images.processed, 'image')}, {_count(rasters.processed, 'raster')})"
    failed = [*images.failed, *rasters.failed]
    parts = summary_parts(images.processed + rasters.processed, len(images.skipped) + len(rasters.skipped),
                          len(failed), detail)
    line = f"{', '.join(parts)} in {images.seconds + rasters.seconds:.1f} s -> {printable(out_dir)}"
    stopped = images.signal if images.interrupted else rasters.signal if rasters.interrupted else None
    end_run(line, failed, quiet, stopped)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"
