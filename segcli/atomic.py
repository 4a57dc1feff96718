"""Atomic file writes, used by every writer in segcli (outputs, manifest, downloads, checkpoints).

A file is written to a temporary name in the target's folder (`.NAME.<hex>.tmp`), flushed and
fsynced, then renamed over the target: a reader sees the old file or the new one, never half of
one. Temporary files get the usual umask-governed permissions (0666 & ~umask), so everything segcli
writes has the same mode. No torch or numpy here: the CLI's light paths import this module.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable

from segcli.errors import OutputError

TEMPORARY_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside `path` (`.NAME.<8 hex>.tmp`)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def create_temporary(path: Path) -> tuple[int, str]:
    """A new, exclusively created file beside `path`: (file descriptor, name)."""
    for _ in range(16):
        candidate = str(temporary_name(path))
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Run `write` on a temporary file next to `path`, then rename it over `path`.

    OSError (disk full, permission, name too long) becomes OutputError naming `path`; the
    temporary file is removed whatever happens.
    """
    path = Path(path)
    temporary = None
    try:
        fd, temporary = create_temporary(path)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if temporary is not None and os.path.lexists(temporary):
            os.unlink(temporary)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically."""
    atomic_write(path, lambda handle: handle.write(data))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy here
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented UTF-8 JSON (numpy scalars/arrays and Paths allowed; NaN refused)."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
