"""A report file a command writes (`--json PATH`, `--csv`, `--markdown`, `--plot`, `export --out`): checked up front.

predict's rule for every file segcli writes besides predict's own outputs, checked before the model
loads or any long work runs:
- an input of the run (the checkpoint, a file of the data folder; also through a symbolic or hard
  link) is never replaced, not even with `--overwrite`;
- an existing file segcli did not write is replaced only with `--overwrite` (segcli's own reports
  are recognised by their content: JSON keys, the CSV header line, the Markdown title, a `segcli`
  text chunk in a PNG); an empty file holds nothing to lose;
- a folder, a link or a device at the path is never replaced; a parent that is a file, or a folder
  no file can be created in, is said at once rather than after the work.
Two options naming the same file are refused too.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from segcli.atomic import create_temporary
from segcli.errors import OutputError
from segcli.text import printable

_HEAD_BYTES = 4096  # enough for a PNG's text chunks, a CSV header line, a Markdown title


@dataclass(frozen=True)
class ReportFile:
    """One file an option names, and how segcli recognises a file of that kind it wrote earlier."""

    option: str                        # e.g. "--json", for the messages
    path: Path
    is_ours: Callable[[Path], bool]


def json_report(predicate: Callable[[Any], bool]) -> Callable[[Path], bool]:
    """A recogniser of segcli JSON reports: the parsed document satisfies `predicate`."""
    def is_ours(path: Path) -> bool:
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return False
        return bool(predicate(document))
    return is_ours


def json_with_keys(*keys: str) -> Callable[[Path], bool]:
    """A JSON object holding every one of `keys`."""
    return json_report(lambda document: isinstance(document, dict) and set(keys) <= document.keys())


def json_list_of(*keys: str) -> Callable[[Path], bool]:
    """A JSON list whose every entry is an object holding `keys` (segcli's listings: `--json` of models, weights)."""
    return json_report(lambda document: isinstance(document, list)
                       and all(isinstance(entry, dict) and set(keys) <= entry.keys() for entry in document))


def text_starting_with(prefix: str) -> Callable[[Path], bool]:
    """A text file whose first bytes are `prefix` (a CSV header line, a Markdown title)."""
    encoded = prefix.encode("utf-8")

    def is_ours(path: Path) -> bool:
        return _head(path).startswith(encoded)
    return is_ours


def png_with_segcli_chunk(path: Path) -> bool:
    """A PNG carrying a `segcli` tEXt chunk among its first chunks (segcli's images and plots)."""
    head = _head(path)
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"tEXtsegcli\0" in head


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(_HEAD_BYTES)
    except OSError:
        return b""


def check_report_files(files: Sequence[ReportFile], inputs: Iterable[str | os.PathLike[str]] = (),
                       overwrite: bool = False, what_inputs: str = "an input of this run") -> None:
    """OutputError for the first file that must not be written (see the module's rules); nothing is written."""
    identities = _identities(inputs)
    seen: dict[str, str] = {}
    for report in files:
        real = os.path.realpath(report.path)
        if real in seen:
            raise OutputError(f"{seen[real]} and {report.option} both name {printable(report.path)}: "
                              "give each its own file")
        seen[real] = report.option
        check_report_file(report, identities, overwrite, what_inputs)


def check_report_file(report: ReportFile, identities: set[tuple[int, int]], overwrite: bool,
                      what_inputs: str = "an input of this run") -> None:
    path, option = Path(report.path), report.option
    try:
        info = os.lstat(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise OutputError(f"cannot write {printable(path)}: {exc.strerror or exc}") from None
        _check_folder(path, option)
        return
    if _identity(path) in identities:
        raise OutputError(f"{printable(path)} is {what_inputs}: not replaced", hint=f"choose another {option}")
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{printable(path)} is a folder, not a file", hint=f"give {option} a file name")
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"{printable(path)} exists and is not a regular file: not replaced",
                          hint=f"choose another {option}")
    if info.st_size == 0 or overwrite or report.is_ours(path):
        _check_folder(path, option)
        return
    raise OutputError(f"{printable(path)} exists and was not written by segcli: not replaced",
                      hint=f"pass --overwrite to replace it, or choose another {option}")


def _check_folder(path: Path, option: str) -> None:
    """The nearest existing folder above `path` must be a folder a file can be created in."""
    folder = path.parent if str(path.parent) else Path(".")
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {printable(path)}: {printable(folder)} is a file, not a folder",
                          hint=f"choose another {option}")
    if folder != (path.parent if str(path.parent) else Path(".")):
        return  # the missing folders are made when the file is written; that is where a problem shows
    try:
        handle, name = create_temporary(path)  # a real probe: permissions, read-only file systems, quotas
    except OSError as exc:
        raise OutputError(f"cannot write {printable(path)}: {exc.strerror or exc}",
                          hint=f"choose another {option}") from None
    os.close(handle)
    os.unlink(name)


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        info = os.stat(path)  # follows links: a link to an input is the input
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _identities(paths: Iterable[str | os.PathLike[str]]) -> set[tuple[int, int]]:
    found = {_identity(path) for path in paths}
    found.discard(None)
    return found  # type: ignore[return-value]


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether `a` and `b` are one file (the same path, a symbolic link to it, or a hard link)."""
    first = _identity(a)
    return first is not None and first == _identity(b)
