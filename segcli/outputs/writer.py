"""Write one image's set of outputs: every file to a temporary first, then all renamed into place.

A set (label, overlay, JSON, ...) is replaced whole or not at all: a full disk, an encoder error
or Ctrl-C while writing leaves the old set as it was and no temporary file behind.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from segcli.atomic import replace_together, write_temporary
from segcli.errors import OutputError
from segcli.outputs.kinds import KINDS, ImageResult, RunInfo
from segcli.text import printable


def write_image_outputs(
    paths: dict[str, Path], result: ImageResult, run: RunInfo, replace: bool = False,
) -> dict[str, float]:
    """Write the files `paths` names (kind -> path, the set's mark last); ms per kind and for the renames.

    `replace`: existing files of the set may be replaced (else an existing one is an OutputError).
    Files that replace an earlier set are fsynced before the renames, so a power failure cannot
    trade that set for empty files; a new set skips the fsyncs (after a power failure its files
    may be empty, which the output plan treats as an incomplete set that a rerun completes).
    """
    folder = next(iter(paths.values())).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {printable(folder)}: {exc.strerror or exc}") from exc
    timings: dict[str, float] = {}
    moves: list[tuple[Path, Path]] = []
    try:
        for name, path in paths.items():
            started = time.perf_counter()
            moves.append((write_temporary(path, partial(KINDS[name].write, result, run), durable=replace), path))
            timings[name] = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        replace_together(moves, replace=replace)
        timings["rename"] = (time.perf_counter() - started) * 1000.0
    except BaseException:
        for temporary, _ in moves:
            temporary.unlink(missing_ok=True)
        raise
    return timings
