"""Find input images: files, folders (walked recursively) and globs, without ever stopping on one bad entry.

A folder that cannot be read, a broken link or a link loop named like an image is reported as a
problem of that entry (one `failed:` line) and the rest is still found. segcli's own outputs are
never taken as inputs: the run's `--out` folder is not walked, and a PNG that carries segcli's
provenance mark (a label or overlay of an earlier run, wherever it lies) is skipped, and said so.
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from segcli.errors import InputImageError
from segcli.provenance import written_by_segcli
from segcli.text import printable

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
_GLOB_CHARS = frozenset("*?[")
_MISSING = frozenset({errno.ENOENT, errno.ENOTDIR})


@dataclass(frozen=True)
class ImageSource:
    """An input image: where it is, and the path outputs are named after (keeps sub-folders)."""

    path: Path      # the file to read
    relative: Path  # relative to the folder (or glob base) it was found in; the name if given directly


@dataclass
class InputScan:
    """What the inputs hold: images, entries that cannot be used (each fails alone), and what was skipped."""

    sources: list[ImageSource] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # (entry, one-line message)
    skipped: list[str] = field(default_factory=list)                # one line each: skipped on purpose, and why


def is_image_name(path: Path) -> bool:
    """True when the file name has one of IMAGE_EXTENSIONS (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def scan_inputs(inputs: Sequence[str | Path], exclude: Iterable[str | Path] = ()) -> InputScan:
    """Expand files, folders (recursive, sorted) and globs into image sources, without duplicates.

    Files named explicitly are taken whatever their extension; folders and globs yield files with
    an image extension, hidden ones (name starting with '.') left out. `exclude`: folders never
    walked (the run's output folder). Raises InputImageError for no input, an input that does not
    exist, or a folder or glob without any image (and nothing wrong in it).
    """
    if not inputs:
        raise InputImageError("no input given: pass image files, folders or globs")
    walker = _Walker([Path(folder) for folder in exclude])
    for raw in inputs:
        walker.add_input(Path(raw))
    scan = walker.scan
    unique: dict[str, ImageSource] = {}
    for source in scan.sources:
        unique.setdefault(os.path.realpath(source.path), source)
    scan.sources = list(unique.values())
    return scan


def find_images(inputs: Sequence[str | Path], exclude: Iterable[str | Path] = ()) -> list[ImageSource]:
    """`scan_inputs(...).sources`, raising InputImageError for the first entry that cannot be used."""
    scan = scan_inputs(inputs, exclude)
    if scan.problems:
        raise InputImageError(scan.problems[0][1])
    return scan.sources


class _Walker:
    """Collects sources, problems and skipped entries over all inputs; visits each real folder once."""

    def __init__(self, excluded: list[Path]) -> None:
        self.scan = InputScan()
        self.excluded = {key for key in map(_folder_key, excluded) if key is not None}
        self.visited: set[tuple[int, int]] = set()

    def add_input(self, path: Path) -> None:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            self._add_missing_input(path, exc)
            return
        if stat.S_ISDIR(mode):
            if _folder_key(path) in self.visited:
                return  # the same folder given twice, or one inside a folder given before
            found = len(self.scan.sources), len(self.scan.problems), len(self.scan.skipped)
            self.walk(path, base=path)
            if (len(self.scan.sources), len(self.scan.problems)) == found[:2]:
                raise InputImageError(_no_images_message(path, self.scan.skipped[found[2]:]))
        else:
            self.scan.sources.append(ImageSource(path, Path(path.name)))

    def _add_missing_input(self, path: Path, exc: OSError) -> None:
        if exc.errno in _MISSING and os.path.lexists(path):
            raise InputImageError(f"input {printable(path)} is a broken symbolic link (to {_link_target(path)})")
        if exc.errno in _MISSING and _GLOB_CHARS & set(str(path)):
            self._add_glob(str(path))
            return
        if exc.errno in _MISSING:
            raise InputImageError(f"input not found: {printable(path)}")
        raise InputImageError(f"cannot read input {printable(path)}: {exc.strerror or exc}")

    def _add_glob(self, pattern: str) -> None:
        """Image files matching a glob the shell did not expand ('**' recurses); folders are walked."""
        base_parts: list[str] = []
        for part in Path(pattern).parts:
            if _GLOB_CHARS & set(part):
                break
            base_parts.append(part)
        base = Path(*base_parts) if base_parts else Path(".")
        before = len(self.scan.sources), len(self.scan.problems)
        for match in sorted(glob.glob(pattern, recursive=True)):
            path = Path(match)
            if os.path.isdir(path):
                self.walk(path, base=base)
            elif is_image_name(path):
                self._add_file(path, base, None)
        if (len(self.scan.sources), len(self.scan.problems)) == before:
            raise InputImageError(f"no image matches {printable(pattern)}")

    def walk(self, folder: Path, base: Path) -> None:
        """Image files under `folder`, sorted, files of a folder before its sub-folders."""
        stack: list[tuple[Path, tuple[tuple[tuple[int, int], Path], ...]]] = [(folder, ())]
        while stack:
            current, ancestors = stack.pop()
            key = _folder_key(current)
            if key in self.visited:
                continue  # a second way into a folder already walked (a link or a bind mount)
            if key is not None:
                self.visited.add(key)
            entries = self._entries(current)
            own_outputs = 0
            for entry in entries:
                if not entry.name.startswith(".") and not _is_folder(entry):
                    own_outputs += self._add_file(Path(entry.path), base, entry)
            if own_outputs:
                self.scan.skipped.append(f"{own_outputs} outputs of an earlier segcli run in {printable(current)}")
            # real sub-folders before links to folders: an image reached both ways is named after its real place
            subfolders = sorted((Path(entry.path) for entry in entries if not entry.name.startswith(".")
                                 and _is_folder(entry)), key=lambda path: (path.is_symlink(), path.name))
            for subfolder in reversed(subfolders):
                if self._walks_into(subfolder, (*ancestors, (key, current))):
                    stack.append((subfolder, (*ancestors, (key, current))))

    def _walks_into(self, subfolder: Path, ancestors: tuple[tuple[tuple[int, int], Path], ...]) -> bool:
        """Folders are known by (device, inode), so a bind mount of a folder inside itself is a loop too
        (realpath sees through symbolic links only)."""
        key = _folder_key(subfolder)
        looped = [path for ancestor, path in ancestors if ancestor == key]
        if looped and subfolder.is_symlink():
            real = os.path.realpath(subfolder)
            self.scan.skipped.append(f"{printable(subfolder)}: a link back to {printable(real)} (a loop)")
            return False
        if looped:
            self.scan.skipped.append(f"{printable(subfolder)}: the folder {printable(looped[0])} again (a loop)")
            return False
        return key not in self.excluded  # this run's output folder is not walked

    def _entries(self, folder: Path) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as listing:
                return sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            self.scan.problems.append((folder, f"cannot read folder {printable(folder)}: {exc.strerror or exc}"))
            return []

    def _add_file(self, path: Path, base: Path, entry: os.DirEntry | None) -> int:
        """Add an image file found in a folder or by a glob; 1 when it is an image segcli wrote (skipped)."""
        if not is_image_name(path):
            if entry is not None and entry.is_symlink() and not os.path.exists(path):
                self.scan.skipped.append(f"{printable(path)}: a broken symbolic link (to {_link_target(path)})")
            return 0
        problem = _file_problem(path)
        if problem is not None:
            self.scan.problems.append((path, problem))
            return 0
        if path.suffix.lower() == ".png" and written_by_segcli(path):
            return 1
        self.scan.sources.append(ImageSource(path, _output_name(path, base)))
        return 0


def _output_name(path: Path, base: Path) -> Path:
    """The name outputs take: `path` relative to `base`, with `..` resolved by name (a glob such as
    'a*/../b/*.jpg' matches 'a1/../b/x.jpg', named b/x.jpg); a name that would climb above `base`
    keeps the file name only."""
    relative = path.relative_to(base)
    if ".." not in relative.parts:
        return relative
    normal = Path(os.path.normpath(relative))
    return Path(path.name) if normal.parts[0] == ".." else normal


def _folder_key(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder a path leads to; None when it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _file_problem(path: Path) -> str | None:
    """Why a file named like an image cannot be read as one (broken link, link loop, not a file); None if fine."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in _MISSING and os.path.islink(path):
            return f"{printable(path)} is a broken symbolic link (to {_link_target(path)})"
        if exc.errno == errno.ELOOP:
            return f"{printable(path)} is a symbolic link loop"
        return f"cannot read {printable(path)}: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        return f"{printable(path)} is not a regular file"
    return None


def _link_target(path: Path) -> str:
    try:
        return printable(os.readlink(path))
    except OSError:
        return "?"


def _no_images_message(folder: Path, skipped: list[str]) -> str:
    message = f"no images in folder {printable(folder)} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
    return f"{message}; skipped {skipped[0]}" if skipped else message
