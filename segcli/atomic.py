"""Atomic file writes, used by every writer in segcli (outputs, manifest, downloads, checkpoints).

A file is written to a temporary name in the target's folder (`.NAME.<8 hex>.tmp`), flushed and
fsynced, then renamed over the target: a reader sees the old file or the new one, never half of
one. `replace_together` does the same for a set of files (all new or all old). Temporary files get
the usual umask-governed permissions (0666 & ~umask), so everything segcli writes has the same
mode. No torch or numpy here: the CLI's light paths import this module.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

from segcli.errors import OutputError
from segcli.text import printable

try:  # POSIX: a writer holds a lock on the target's folder, so no other run removes its live temporaries
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

TEMPORARY_SUFFIX = ".tmp"
# `.NAME.<8 lowercase hex>.tmp`: only files matching this (and naming a file segcli writes) are its own
TEMPORARY_PATTERN = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$", re.DOTALL)
_NAME_MAX = 255  # bytes in one file name on common file systems
_TEMPORARY_NAME_BYTES = _NAME_MAX - len(".") - len(".01234567.tmp")


def temporary_stem(name: str) -> str:
    """The NAME part of `name`'s temporaries: the name, cut (at a character boundary) to fit 255 bytes."""
    encoded = os.fsencode(name)
    if len(encoded) <= _TEMPORARY_NAME_BYTES:
        return name
    cut = _TEMPORARY_NAME_BYTES
    while cut > 1 and encoded[cut] & 0xC0 == 0x80:  # never split a UTF-8 character
        cut -= 1
    return os.fsdecode(encoded[:cut])


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside `path` (`.NAME.<8 hex>.tmp`, NAME cut to fit the name limit)."""
    return path.with_name(f".{temporary_stem(path.name)}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def create_temporary(path: Path) -> tuple[int, str]:
    """A new, exclusively created file beside `path`: (file descriptor, name)."""
    for _ in range(16):
        candidate = str(temporary_name(path))
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def write_temporary(path: str | Path, write: Callable[[BinaryIO], None], durable: bool = True) -> Path:
    """Run `write` on a new temporary file beside `path`, flushed (and fsynced when `durable`); the caller renames it.

    Without fsync a power failure can leave the renamed file empty (never half of another file);
    files that can be made again and replace nothing may skip it. OSError (disk full, permission,
    name too long) becomes OutputError naming `path`; on any failure the temporary is removed.
    """
    path = Path(path)
    temporary = None
    try:
        fd, temporary = create_temporary(path)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        done, temporary = Path(temporary), None
        return done
    except OSError as exc:
        raise OutputError(f"cannot write {printable(path)}: {exc.strerror or exc}") from exc
    finally:
        if temporary is not None and os.path.lexists(temporary):
            os.unlink(temporary)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Run `write` on a temporary file next to `path`, then rename it over `path`.

    OSError (disk full, permission, name too long) becomes OutputError naming `path`; the
    temporary file is removed whatever happens.
    """
    temporary = write_temporary(path, write)
    try:
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        raise OutputError(f"cannot write {printable(path)}: {exc.strerror or exc}") from exc
    finally:
        if temporary is not None and os.path.lexists(temporary):
            os.unlink(temporary)


def replace_together(moves: Sequence[tuple[Path, Path]], replace: bool = True, remove: Sequence[Path] = ()) -> None:
    """Rename each (temporary, target) pair into place, all of them or none.

    The last target marks the set as complete: it is moved aside first and put in place last, so
    a process killed in between leaves a set without its mark (incomplete, redone by a rerun),
    never an old mark beside new files. The targets' old files are moved aside to temporaries,
    put back if a rename fails (or Ctrl-C lands), and deleted once every new file is in place.
    `replace=False`: a target that exists is an error and nothing is renamed. `remove`: files of the
    old set the new one has no counterpart for; they go with the old set (and come back with it).
    """
    aside: list[tuple[Path, Path]] = []  # (target, where its old file went)
    placed: list[Path] = []
    current = moves[-1][1]
    try:
        for current in [moves[-1][1], *(target for _, target in moves[:-1]), *remove]:
            if os.path.lexists(current):
                if not replace:
                    raise OutputError(f"{printable(current)} already exists (written while this run was going)")
                aside.append((current, temporary_name(current)))
                os.replace(current, aside[-1][1])
        for temporary, current in moves:  # the mark is the last pair
            os.replace(temporary, current)
            placed.append(current)
    except BaseException as exc:
        _undo(moves, aside, placed)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {printable(current)}: {exc.strerror or exc}") from exc
        raise
    for _, backup in aside:
        _remove_quietly(backup)


def _undo(moves: Sequence[tuple[Path, Path]], aside: list[tuple[Path, Path]], placed: list[Path]) -> None:
    """Put the old files back and remove the new ones and the temporaries (best effort)."""
    for target in placed:
        _remove_quietly(target)
    for target, backup in reversed(aside):
        try:
            os.replace(backup, target)
        except OSError:
            pass  # best effort: an old file that cannot be put back keeps its temporary name
    for temporary, _ in moves:
        _remove_quietly(temporary)


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # already gone, or not ours to remove any more: a later run's clean-up retries


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically."""
    atomic_write(path, lambda handle: handle.write(data))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy here
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def json_bytes(obj: Any) -> bytes:
    """`obj` as indented UTF-8 JSON with a final newline (numpy scalars/arrays and Paths allowed; NaN refused)."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    return (text + "\n").encode("utf-8")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented UTF-8 JSON (numpy scalars/arrays and Paths allowed; NaN refused)."""
    atomic_write_bytes(path, json_bytes(obj))


class Terminated(KeyboardInterrupt):
    """SIGTERM raised as an interrupt (`terminate_as_interrupt`), so `finally` clauses remove temporaries; exit 143."""

    exit_code = 128 + signal.SIGTERM


def _raise_terminated(number: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside: SIGTERM raises `Terminated` instead of ending the process at once (which leaves temporaries).

    Only where SIGTERM has its default action and in the main thread (a caller with its own handling,
    such as predict's `StopRequests`, keeps it).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def remove_stale_temporaries(folder: Path, names: Iterable[str]) -> list[Path]:
    """Delete segcli's own `.NAME.<8 hex>.tmp` files in `folder` whose NAME is one of `names` (of a killed run).

    The caller must make sure no live writer uses them (`claimed_folder`, or predict's output folder lock).
    """
    stems = {temporary_stem(name) for name in names}
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except OSError:
        return []  # not made yet, or unreadable: the writes there will say so
    removed: list[Path] = []
    for entry in entries:
        match = TEMPORARY_PATTERN.match(entry.name)
        if match and match.group("name") in stems and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


@contextmanager
def claimed_folder(path: str | Path, also: Iterable[str] = ()) -> Iterator[list[Path]]:
    """Lock `path`'s folder while `path` is written, and first remove the temporaries a killed writer of `path`
    (or of the files named `also` beside it) left.

    Yields the removed files. While another segcli process holds the folder, nothing is removed (its
    temporaries are alive) and the write goes ahead unlocked.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    descriptor = None
    try:
        if fcntl is not None:
            descriptor = os.open(folder, os.O_RDONLY)
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by another run (BlockingIOError), or a file system without locks
        yield []
    else:
        yield remove_stale_temporaries(folder, [path.name, *also])
    finally:
        if descriptor is not None:
            os.close(descriptor)  # closing releases the lock
