"""Look inside a `torch.save` file before `torch.load` reads it: size bounds and TorchScript archives.

A `.pth` written by `torch.save` is a zip archive whose tensors torch's own writer stores
uncompressed (compression ratio about 1). torch's reader inflates every member to the size its
zip entry declares, so a 3 MB file whose members declare gigabytes of highly compressible bytes
(a "zip bomb") costs that much memory before any check. The rule here, applied to the sizes the
zip's central directory declares (what the reader allocates), before any member is read:

    refuse when the members' uncompressed sizes add up to more than
    max(MAX_EXPANSION x the file's size, EXPANSION_FLOOR), or to more than MAX_UNCOMPRESSED.

Legacy (non-zip, PyTorch < 1.6) files store every storage raw after the pickle; torch checks each
storage's byte count against the bytes in the file before using it (a pickle that declares more
fails with "storage has wrong byte size"), so the file's own size bounds what is read.

A TorchScript archive (`torch.jit.save`, also what `segcli export` writes for `.pt`) carries
code (`code/`, `constants.pkl`); loading it means running that code, so it is never a checkpoint.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from segcli.errors import CheckpointError

MAX_EXPANSION = 64                     # uncompressed / file size; torch's own files are about 1
EXPANSION_FLOOR = 64 * 1024 ** 2       # a small file may hold this much whatever its size
MAX_UNCOMPRESSED = 16 * 1024 ** 3      # no zoo checkpoint comes near (FCN-8s VGG16: about 0.5 GB)
TORCHSCRIPT_METADATA_FILE = "segcli.json"  # where `segcli export` puts its metadata in a TorchScript archive


def _members(path: Path) -> list[zipfile.ZipInfo] | None:
    """The archive's entries, or None when the file is not a zip archive (legacy torch format, or junk)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None  # torch.load says what is wrong with it


def _is_torchscript(members: list[zipfile.ZipInfo]) -> bool:
    names = [member.filename for member in members]
    return any(name.endswith("/constants.pkl") for name in names) and any("/code/" in name for name in names)


def _written_by_segcli(members: list[zipfile.ZipInfo]) -> bool:
    return any(member.filename.endswith(f"/extra/{TORCHSCRIPT_METADATA_FILE}") for member in members)


def _human(size: int) -> str:
    return f"{size / 1024 ** 3:.1f} GB" if size >= 1024 ** 3 else f"{size / 1024 ** 2:.1f} MB"


def uncompressed_bound(file_size: int) -> int:
    """The most bytes a torch zip archive of `file_size` bytes may declare (see the module's rule)."""
    return min(max(MAX_EXPANSION * file_size, EXPANSION_FLOOR), MAX_UNCOMPRESSED)


def check_torch_file(path: str | os.PathLike[str], what: str | None = None) -> None:
    """Raise a one-line CheckpointError for a zip bomb or a TorchScript archive; other files pass.

    `what` names the file in the message (default: its path).
    """
    path = Path(path)
    what = what or str(path)
    members = _members(path)
    if members is None:
        return
    if _is_torchscript(members):
        writer = " (written by segcli export)" if _written_by_segcli(members) else ""
        raise CheckpointError(f"{what} is a TorchScript module{writer}; TorchScript files are not loaded as "
                              f"checkpoints because they carry code: use the checkpoint it was exported from, "
                              f"or the ONNX export")
    file_size = path.stat().st_size
    bound = uncompressed_bound(file_size)
    declared = sum(member.file_size for member in members)
    if declared > bound:
        raise CheckpointError(f"refusing to load {what}: its zip entries declare {_human(declared)} uncompressed "
                              f"in a {_human(file_size)} file (more than {_human(bound)}; torch's own files hold "
                              f"their tensors uncompressed); it is damaged or crafted")


def torch_error_reason(exc: BaseException) -> str:
    """torch's error in one line, without its advice to turn weights_only off (that would run the file's code)."""
    text = str(exc)
    first = text.splitlines()[0] if text else "no detail"
    if "weights_only" in first or "weights only" in first.lower():
        first = "the file holds objects that only a full (code-running) unpickling could read"
    return f"{type(exc).__name__}: {first[:300]}"
