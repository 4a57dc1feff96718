"""The checkpoint manifest: `weights/manifest.json` shipped with segcli plus the user's own records.

The user's records live in `segcli_home()/manifest.json` (written by `segcli weights add`).
Both files hold ``{"format": "segcli-manifest", "version": 1, "checkpoints": [record, ...]}``.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from segcli.atomic import atomic_write_json
from segcli.checkpoints.record import CheckpointRecord, parse_record
from segcli.errors import CheckpointError, ConfigurationError, UnknownNameError

MANIFEST_FORMAT = "segcli-manifest"
MANIFEST_VERSION = 1
LOCK_NAME = "manifest.json.lock"


def segcli_home() -> Path:
    """segcli's own folder: `$SEGCLI_HOME` (absolute, `~` allowed), default `~/.cache/segcli`.

    A relative SEGCLI_HOME is refused, as the XDG base-directory spec does for its variables:
    it would name a different cache in every working directory.
    """
    configured = os.environ.get("SEGCLI_HOME")
    if not configured:
        return Path.home() / ".cache" / "segcli"
    try:
        home = Path(configured).expanduser()
    except RuntimeError:  # `~user/...` naming a user this system does not know
        raise ConfigurationError(f"SEGCLI_HOME={configured!r}: {configured.split('/')[0]} is no user's home "
                                 "folder here; set it to a full path") from None
    if not home.is_absolute():
        raise ConfigurationError(f"SEGCLI_HOME must be an absolute path, got {configured!r} (here it would mean "
                                 f"{Path.cwd() / home}, and another folder elsewhere); set it to a full path")
    return home


def writable_folder(path: Path) -> Path:
    """`path` (segcli's home or a folder in it), created if needed; one clear line when it cannot be written."""
    advice = f"set SEGCLI_HOME to a folder you can write (now {segcli_home()})"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(parent for parent in (path, *path.parents) if parent.exists() and not parent.is_dir())
        raise ConfigurationError(f"{blocker} is a file, so segcli cannot keep checkpoints in {path}; "
                                 f"{advice}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot create {path}: {exc.strerror or exc}; {advice}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigurationError(f"cannot write in {path}: permission denied; {advice}")
    return path


def file_exists(path: Path) -> bool:
    """`path.is_file()`, except that a folder segcli may not read is an error, not a missing file."""
    try:
        return path.is_file()
    except OSError as exc:
        raise ConfigurationError(f"cannot look in {path.parent}: {exc.strerror or exc}; fix its permissions "
                                 f"or set {'SEGCLI_HOME' if segcli_home() in (path, *path.parents) else 'TORCH_HOME'} "
                                 f"to another folder") from None


def segcli_checkpoint_dir() -> Path:
    """Where `segcli weights pull/add` put checkpoint files."""
    return segcli_home() / "checkpoints"


def user_manifest_path() -> Path:
    return segcli_home() / "manifest.json"


def torch_hub_checkpoint_dir() -> Path:
    """torch.hub's download cache: `$TORCH_HOME/hub/checkpoints`, default `~/.cache/torch/hub/checkpoints`."""
    configured = os.environ.get("TORCH_HOME")
    torch_home = Path(configured).expanduser() if configured else Path.home() / ".cache" / "torch"
    return torch_home / "hub" / "checkpoints"


def shipped_weights_dir() -> Path:
    """The package's `weights/` folder (shipped manifest and segcli checkpoints; `weights/` in the
    repository links to it), found with importlib.resources so an installed wheel has it too."""
    from importlib.resources import files

    return Path(str(files("segcli") / "weights"))


def shipped_manifest_path() -> Path:
    return shipped_weights_dir() / "manifest.json"


def validate_record(record: CheckpointRecord, origin: str) -> None:
    """Raise CheckpointError when a record cannot be used: a field `CheckpointRecord.from_dict` refuses,
    or a model that is not in the zoo."""
    from segcli.models import MODEL_NAMES

    where = f"checkpoint {record.name!r} in {origin}"
    parse_record(record.to_dict(), where)
    if record.model not in MODEL_NAMES:
        raise CheckpointError(f"{where}: unknown model {record.model!r}; use one of {', '.join(MODEL_NAMES)}")


def read_manifest_file(path: Path) -> list[CheckpointRecord]:
    """The records of one manifest file (an absent file has none)."""
    if not file_exists(path):
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read manifest {path}: {exc}; fix or delete the file") from None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise CheckpointError(f"{path} is not a segcli manifest (expected \"format\": \"{MANIFEST_FORMAT}\")")
    if document.get("version") != MANIFEST_VERSION:
        raise CheckpointError(f"{path}: manifest version {document.get('version')!r} is not supported "
                              f"(this segcli reads version {MANIFEST_VERSION})")
    records = []
    for index, entry in enumerate(document.get("checkpoints", [])):
        record = parse_record(entry, f"{path}: checkpoint entry {index}")
        validate_record(record, str(path))
        records.append(record)
    return records


def load_manifest() -> dict[str, CheckpointRecord]:
    """Every known checkpoint by name: the shipped manifest, then the user's; duplicate names are an error."""
    shipped = shipped_manifest_path()
    if not file_exists(shipped):
        raise CheckpointError(f"segcli's installation is broken: its checkpoint manifest {shipped} is missing; "
                              f"reinstall segcli (pip install --force-reinstall segcli)")
    table: dict[str, CheckpointRecord] = {}
    origins: dict[str, Path] = {}
    for path in (shipped, user_manifest_path()):
        for record in read_manifest_file(path):
            if record.name in table:
                raise CheckpointError(
                    f"checkpoint name {record.name!r} appears twice (in {origins[record.name]} and {path}); "
                    f"rename or remove one of them in {user_manifest_path()}"
                )
            table[record.name] = record
            origins[record.name] = path
    return table


def find_record(name: str) -> CheckpointRecord:
    """The record called `name`; an unknown name lists the known ones."""
    table = load_manifest()
    if name not in table:
        raise UnknownNameError(f"unknown checkpoint {name!r}; known checkpoints: {', '.join(table)} "
                               f"(see `segcli weights list`)")
    return table[name]


def records_for_model(model: str) -> list[CheckpointRecord]:
    """The records that load into `model` (alias accepted), the model's default checkpoint first."""
    from segcli.models import model_spec

    spec = model_spec(model)
    records = [record for record in load_manifest().values() if record.model == spec.name]
    if spec.default_checkpoint is not None:
        records.sort(key=lambda record: record.name != spec.default_checkpoint)
    return records


def write_manifest_file(path: Path, records: list[CheckpointRecord]) -> None:
    """Write a manifest atomically (temporary file in the same folder, then rename)."""
    document: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "checkpoints": [record.to_dict() for record in records],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, document)


@contextmanager
def user_manifest_lock() -> Iterator[None]:
    """Hold the user manifest's lock (`manifest.json.lock` beside it) for a read-modify-write.

    An advisory lock the OS drops when the process ends, so a killed `weights add` never leaves a
    stale lock behind. Not re-entrant: take it once per operation.
    """
    path = writable_folder(segcli_home()) / LOCK_NAME
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the lock file {path}: {exc.strerror or exc}") from None
    try:
        _lock(descriptor)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def _lock(descriptor: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(descriptor, msvcrt.LK_LOCK, 1)
        return
    fcntl.flock(descriptor, fcntl.LOCK_EX)


def append_user_record(record: CheckpointRecord) -> Path:
    """Append `record` to the user's manifest; the caller holds `user_manifest_lock()`."""
    validate_record(record, "the new record")
    if record.name in load_manifest():
        raise CheckpointError(f"a checkpoint called {record.name!r} already exists",
                              hint="choose another --name")
    path = user_manifest_path()
    write_manifest_file(path, read_manifest_file(path) + [record])
    return path


def add_user_record(record: CheckpointRecord) -> Path:
    """Append `record` to the user's manifest under its lock; a name already known is an error."""
    with user_manifest_lock():
        return append_user_record(record)
