"""The checkpoint manifest: `weights/manifest.json` shipped with segcli plus the user's own records.

The user's records live in `segcli_home()/manifest.json` (written by `segcli weights add`).
Both files hold ``{"format": "segcli-manifest", "version": 1, "checkpoints": [record, ...]}``; the
shipped one also defines, once, the class sets (``"class_sets": {"voc": {"names": [...], "palette":
"voc"}}``) and preprocessing presets (``"preprocessing": {"torchvision": {...}}``) its records name
(``"classes": "voc"``, ``"preprocessing": "torchvision"``); see `shared.py`. The merged table is parsed
once per process and again only when a file changes (`load_manifest`).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from segcli.atomic import atomic_write_bytes
from segcli.checkpoints.record import CheckpointRecord, parse_record
from segcli.checkpoints.shared import SharedDefinitions, manifest_json, shared_definitions
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
    parse_record(record.to_dict(), f"checkpoint {record.name!r} in {origin}")
    _check_model(record, origin)


def _check_model(record: CheckpointRecord, origin: str) -> None:
    from segcli.models import MODEL_NAMES

    if record.model not in MODEL_NAMES:
        raise CheckpointError(f"checkpoint {record.name!r} in {origin}: unknown model {record.model!r}; "
                              f"use one of {', '.join(MODEL_NAMES)}")


def _read_document(path: Path) -> dict[str, Any] | None:
    """A manifest file's JSON object, its format and version checked (None: no such file)."""
    if not file_exists(path):
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read manifest {path}: {exc}; fix or delete the file") from None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise CheckpointError(f"{path} is not a segcli manifest (expected \"format\": \"{MANIFEST_FORMAT}\")")
    if document.get("version") != MANIFEST_VERSION:
        raise CheckpointError(f"{path}: manifest version {document.get('version')!r} is not supported "
                              f"(this segcli reads version {MANIFEST_VERSION})")
    return document


def read_shared_definitions(path: Path, inherited: SharedDefinitions | None = None) -> SharedDefinitions:
    """The class sets and preprocessing presets a manifest file defines (over `inherited` ones)."""
    return shared_definitions(_read_document(path) or {}, str(path), inherited)


def _records_of(path: Path, document: dict[str, Any], shared: SharedDefinitions) -> list[CheckpointRecord]:
    entries = document.get("checkpoints", [])
    if not isinstance(entries, list):
        raise CheckpointError(f"{path}: \"checkpoints\" must be a list of records")
    records = []
    for index, entry in enumerate(entries):
        origin = f"{path}: checkpoint entry {index}"
        record = parse_record(shared.expand(entry, origin), origin)
        _check_model(record, str(path))
        records.append(record)
    return records


def read_manifest_file(path: Path, inherited: SharedDefinitions | None = None) -> list[CheckpointRecord]:
    """The records of one manifest file (an absent file has none), references to class sets and presets
    resolved against the file's own definitions and `inherited` (the shipped file's, for the user's)."""
    document = _read_document(path)
    if document is None:
        return []
    return _records_of(path, document, shared_definitions(document, str(path), inherited))


def _read_table(shipped: Path, user: Path) -> dict[str, CheckpointRecord]:
    """Both files parsed and validated: the shipped records, then the user's; a name twice is an error."""
    document = _read_document(shipped) or {}
    shared = shared_definitions(document, str(shipped))
    table: dict[str, CheckpointRecord] = {}
    origins: dict[str, Path] = {}
    for path, records in ((shipped, _records_of(shipped, document, shared)), (user, read_manifest_file(user, shared))):
        for record in records:
            if record.name in table:
                raise CheckpointError(
                    f"checkpoint name {record.name!r} appears twice (in {origins[record.name]} and {path}); "
                    f"rename or remove one of them in {user_manifest_path()}"
                )
            table[record.name] = record
            origins[record.name] = path
    return table


def _file_state(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when a file is rewritten (atomically or in place): None when there is no file."""
    if not file_exists(path):
        return None
    try:
        info = path.stat()
    except FileNotFoundError:  # removed since file_exists looked
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


_CACHE: dict[str, Any] = {"key": None, "table": {}}


def forget_manifest() -> None:
    """Drop the parsed table: the next lookup reads both files (every writer of a manifest calls this)."""
    _CACHE["key"] = None


def load_manifest() -> dict[str, CheckpointRecord]:
    """Every known checkpoint by name: the shipped manifest, then the user's; duplicate names are an error.

    Parsed and validated once per process, then again only when either file changes (its inode, size,
    modification or change time), so a record `weights add` wrote, here or in another process, is seen.
    """
    shipped, user = shipped_manifest_path(), user_manifest_path()
    shipped_state = _file_state(shipped)
    if shipped_state is None:
        raise CheckpointError(f"segcli's installation is broken: its checkpoint manifest {shipped} is missing; "
                              f"reinstall segcli (pip install --force-reinstall segcli)")
    key = (shipped, shipped_state, user, _file_state(user))
    if _CACHE["key"] != key:
        _CACHE["table"], _CACHE["key"] = _read_table(shipped, user), key
    return dict(_CACHE["table"])


def find_record(name: str) -> CheckpointRecord:
    """The record called `name`; an unknown name lists the known ones."""
    table = load_manifest()
    if name not in table:
        raise UnknownNameError(f"unknown checkpoint {name!r}; known checkpoints: {', '.join(table)} "
                               f"(see `segcli weights list`)")
    return table[name]


def records_for_model(model: str) -> list[CheckpointRecord]:
    """The records that load into `model` (alias accepted), in manifest order."""
    from segcli.models import canonical_name

    name = canonical_name(model)
    return [record for record in load_manifest().values() if record.model == name]


def write_manifest_file(path: Path, records: list[CheckpointRecord], shared: SharedDefinitions | None = None) -> None:
    """Write a manifest atomically (temporary file in the same folder, then rename).

    With `shared` (the shipped manifest's own definitions), they are written at the top and a record
    whose class names and palette, or preprocessing, equal one of them names it; without, every record
    carries its own values (the user's file: it stays readable whatever a later segcli ships).
    """
    document: dict[str, Any] = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION}
    if shared is not None:
        document.update(shared.to_dict())
    document["checkpoints"] = [shared.compact(record.to_dict()) if shared is not None else record.to_dict()
                               for record in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, manifest_json(document))
    forget_manifest()


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
    write_manifest_file(path, read_manifest_file(path, read_shared_definitions(shipped_manifest_path())) + [record])
    return path


def add_user_record(record: CheckpointRecord) -> Path:
    """Append `record` to the user's manifest under its lock; a name already known is an error."""
    with user_manifest_lock():
        return append_user_record(record)
