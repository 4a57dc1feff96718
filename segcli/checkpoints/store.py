"""segcli's checkpoint store: what `segcli weights pull / add / verify` do.

Built on lookup (`resolve`) and files (`loading`); neither of those imports this module.
Every file lands through `segcli.atomic` (one temporary-file-and-rename, one file mode).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from segcli.atomic import atomic_write
from segcli.checkpoints.download import digest_matches, sha256_of
from segcli.checkpoints.loading import checkpoint_num_classes, detect_layout, read_checkpoint_file
from segcli.checkpoints.manifest import (append_user_record, find_record, load_manifest, segcli_checkpoint_dir,
                                         user_manifest_lock, validate_record, writable_folder)
from segcli.checkpoints.record import SOURCE_SEGCLI_CACHE, CheckpointRecord, ResolvedCheckpoint
from segcli.checkpoints.resolve import (WEIGHTS_HINT, canonical_model, fetch, files_on_disk, find_on_disk,
                                        missing_checkpoint_hint, record_from_file)
from segcli.errors import CheckpointError
from segcli.text import printable

_NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def is_valid_name(name: str) -> bool:
    """Checkpoint names become file names: letters, digits, '.', '_' and '-' only, not '.' or '..'."""
    return bool(name) and not set(name) - _NAME_CHARACTERS and name not in (".", "..")


@dataclass(frozen=True)
class FileCheck:
    record: CheckpointRecord
    path: Path | None      # None: no copy on disk
    status: str            # "ok", "mismatch", "no checksum" (none recorded) or "not on disk"
    sha256: str | None     # the file's full digest, when it was hashed


def pull_checkpoint(name: str, force: bool = False, progress: bool = True) -> ResolvedCheckpoint:
    """Download a record's file into segcli's cache (unless a copy is already on disk and not `force`)."""
    record = find_record(name)
    if not record.url:
        raise CheckpointError(f"{record.name} has no public download: {missing_checkpoint_hint(record)}",
                              hint=WEIGHTS_HINT)
    found = None if force else find_on_disk(record)
    return ResolvedCheckpoint(record, *found) if found is not None else fetch(record, progress)


def _new_record(path: Path, name: str, model: str, dataset: str | None, categories: tuple[str, ...] | None,
                palette: str | None, layout: str | None) -> CheckpointRecord:
    """The record `weights add` stores for `path` (class names checked against the file's classifier)."""
    if not is_valid_name(name):
        raise CheckpointError(f"checkpoint name {name!r} may only use letters, digits, '.', '_' and '-'")
    if name in load_manifest():
        raise CheckpointError(f"a checkpoint called {name!r} already exists",
                              hint="choose another --name")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    base = record_from_file(model, path)
    obj = read_checkpoint_file(path, mmap=True)
    num_classes = checkpoint_num_classes(obj, layout or detect_layout(obj), base.model, base.model_kwargs)
    if categories is not None and num_classes is not None and len(categories) != num_classes:
        raise CheckpointError(f"{path.name} predicts {num_classes} classes but {len(categories)} class names "
                              f"were given")
    record = dataclasses.replace(
        base, name=name, model=canonical_model(model), dataset=dataset or base.dataset,
        categories=tuple(categories) if categories is not None else base.categories,
        palette=palette or base.palette, layout=layout or base.layout, filename=f"{name}{path.suffix}",
        url=None, sha256=sha256_of(path), notes=f"added with `segcli weights add` from {printable(path)}",
    )
    validate_record(record, "the new record")
    return record


def add_checkpoint_file(path: str | Path, name: str, model: str, *, dataset: str | None = None,
                        categories: tuple[str, ...] | None = None, palette: str | None = None,
                        layout: str | None = None) -> ResolvedCheckpoint:
    """Copy a checkpoint into segcli's cache and record it (with its SHA-256) in the user manifest."""
    path = Path(path).expanduser()
    with user_manifest_lock():  # name checks, copy and record as one step against concurrent adds
        record = _new_record(path, name, model, dataset, categories, palette, layout)
        destination = writable_folder(segcli_checkpoint_dir()) / record.filename
        if destination.exists():
            raise CheckpointError(f"{destination} already exists",
                                  hint="remove it or choose another --name")
        with open(path, "rb") as source:
            atomic_write(destination, lambda sink: shutil.copyfileobj(source, sink, 1 << 20))
        try:
            append_user_record(record)
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
    return ResolvedCheckpoint(record, destination, SOURCE_SEGCLI_CACHE)


def verify_checkpoints(names: list[str] | None = None) -> list[FileCheck]:
    """Hash every copy on disk of the named records (all records when `names` is empty)."""
    records = [find_record(name) for name in names] if names else list(load_manifest().values())
    checks = []
    for record in records:
        copies = files_on_disk(record)
        if not copies:
            checks.append(FileCheck(record, None, "not on disk", None))
        for path, _ in copies:
            digest = sha256_of(path)
            status = "no checksum" if record.sha256 is None else (
                "ok" if digest_matches(digest, record.sha256) else "mismatch")
            checks.append(FileCheck(record, path, status, digest))
    return checks
