"""Write one image's set of outputs: every file to a temporary first, then all renamed into place.

A set (label, overlay, JSON, ...) is replaced whole or not at all: a full disk, an encoder error
or Ctrl-C while writing leaves the old set as it was and no temporary file behind.
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

from segcli.atomic import replace_together, write_temporary
from segcli.errors import OutputError
from segcli.outputs.classwise import present_classes
from segcli.outputs.kinds import split_key
from segcli.outputs.results import ImageResult, RunInfo
from segcli.text import printable


def write_image_outputs(
    paths: dict[str, Path], result: ImageResult, run: RunInfo, replace: bool = False,
) -> dict[str, float]:
    """Write the files `paths` names (kind -> path, the set's mark last); ms per kind and for the renames.

    `replace`: existing files of the set may be replaced (else an existing one is an OutputError).
    A per-class file (`masks:3`) is written when its class is present; when it is not, a file an
    earlier set left there is removed with that set.
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
    present = set(present_classes(result.labels, len(run.categories))) if any(":" in key for key in paths) else set()
    stale = [path for key, path in paths.items() if split_key(key)[1] not in (None, *present)]
    try:
        for key, path in paths.items():
            kind, class_index = split_key(key)
            if class_index is not None and class_index not in present:
                continue
            write = partial(kind.write, result, run) if class_index is None else partial(
                kind.write, result, run, class_index=class_index)
            started = time.perf_counter()
            moves.append((write_temporary(path, write, durable=replace), path))
            timings[kind.name] = timings.get(kind.name, 0.0) + (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        _replace_set(moves, [path for path in stale if os.path.lexists(path)], replace)
        timings["rename"] = (time.perf_counter() - started) * 1000.0
    except BaseException:
        for temporary, _ in moves:
            temporary.unlink(missing_ok=True)
        raise
    return timings


def _replace_set(moves: list[tuple[Path, Path]], stale: list[Path], replace: bool) -> None:
    """The new files in place and the stale ones gone, together; a set of no file (no class kept) removes them."""
    if moves:
        replace_together(moves, replace=replace, remove=stale)
        return
    for path in stale:
        try:
            os.unlink(path)
        except OSError as exc:
            raise OutputError(f"cannot remove {printable(path)}: {exc.strerror or exc}") from exc
