"""The output folder of a run: made on first use, locked while the run writes, cleared of stale temporaries.

No marker file is written: input discovery recognises segcli's outputs file by file (the PNG
provenance chunk, `segcli.outputs.png`), which also works in place, where outputs lie beside the
user's photos and a folder-wide marker would hide those photos from later runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from segcli.atomic import remove_stale_temporaries
from segcli.errors import OutputError
from segcli.text import printable

try:  # POSIX: a run holds a lock on its output folder, so another run never removes its live temporaries
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None


class OutputFolder:
    """`with OutputFolder(out_dir) as folder:` makes and locks the folder for the run."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir)
        self._fd: int | None = None
        self.shared = False  # another live run writes into the same folder

    def __enter__(self) -> "OutputFolder":
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {printable(self.path)}: {exc.strerror or exc}") from exc
        self._lock()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.shared = True
        except OSError:
            pass  # a file system without locks: clean-up goes ahead, as it would on Windows

    def remove_stale_temporaries(self, names_by_folder: dict[Path, set[str]]) -> list[Path]:
        """Delete segcli's own `.NAME.<8 hex>.tmp` files left by a killed run; NAME must be a file this run plans.

        Nothing is removed while another run holds the folder (its temporaries are alive).
        """
        if self.shared:
            return []
        removed: list[Path] = []
        for folder, names in names_by_folder.items():
            removed += remove_stale_temporaries(folder, names)
        return removed
