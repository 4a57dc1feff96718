"""Which checkpoint file a model runs with: `--weights NAME|FILE` or the model's default.

Lookup order: a path given > the torch hub cache > segcli's cache > files shipped in `weights/`
> a download (only with `allow_download=True` and a record that has a URL) > a CheckpointError
that says what to run or where to put the file. Nothing ever falls back to random weights.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from segcli.checkpoints import manifest
from segcli.checkpoints.manifest import (find_record, load_manifest, records_for_model, segcli_checkpoint_dir,
                                         torch_hub_checkpoint_dir)
from segcli.checkpoints.record import CAFFE_PREPROCESSING, IMAGENET_PREPROCESSING, CheckpointRecord
from segcli.errors import CheckpointError

SOURCE_PATH = "path"
SOURCE_TORCH_HUB = "torch-hub-cache"
SOURCE_SEGCLI_CACHE = "segcli-cache"
SOURCE_SHIPPED = "shipped"
SOURCE_DOWNLOAD = "download"
SOURCE_LABELS = {
    SOURCE_PATH: "file given", SOURCE_TORCH_HUB: "torch hub cache", SOURCE_SEGCLI_CACHE: "segcli cache",
    SOURCE_SHIPPED: "shipped with segcli", SOURCE_DOWNLOAD: "downloaded",
}
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".bin", ".tar")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    record: CheckpointRecord  # what the file predicts and how to feed it
    path: Path                # the file to load
    source: str               # one of the SOURCE_* names: where the file was found

    def describe(self) -> str:
        """One line for the CLI, e.g. `weights: lraspp-coco (torch hub cache: /root/.cache/...)`."""
        return f"weights: {self.record.name} ({SOURCE_LABELS[self.source]}: {self.path})"


def checkpoint_locations(record: CheckpointRecord) -> list[tuple[Path, str]]:
    """Where a record's file may be on disk, in lookup order."""
    return [
        (torch_hub_checkpoint_dir() / record.filename, SOURCE_TORCH_HUB),
        (segcli_checkpoint_dir() / record.filename, SOURCE_SEGCLI_CACHE),
        (manifest.shipped_weights_dir() / record.filename, SOURCE_SHIPPED),
    ]


def files_on_disk(record: CheckpointRecord) -> list[tuple[Path, str]]:
    """Every copy of a record's file that exists, in lookup order."""
    return [(path, source) for path, source in checkpoint_locations(record) if path.is_file()]


def find_on_disk(record: CheckpointRecord) -> tuple[Path, str] | None:
    """The first copy of a record's file in lookup order, or None."""
    found = files_on_disk(record)
    return found[0] if found else None


def missing_checkpoint_hint(record: CheckpointRecord) -> str:
    """What the user should do to get a record's file."""
    if record.url:
        return f"run `segcli weights pull {record.name}`"
    if record.layout == "segcli":
        return (f"the shipped file {manifest.shipped_weights_dir() / record.filename} is missing; reinstall segcli "
                f"from its repository or train one with `segcli train --model {record.model}`")
    return f"put {record.filename} in {segcli_checkpoint_dir()} ({record.notes or 'no public download'})"


def _looks_like_path(weights: str) -> bool:
    return Path(weights).expanduser().is_file() or "/" in weights or "\\" in weights or \
        weights.endswith(CHECKPOINT_SUFFIXES)


def _canonical(model: str) -> str:
    from segcli.models import canonical_name

    return canonical_name(model)


def _fallback_categories(num_classes: int) -> tuple[tuple[str, ...], str]:
    from segcli.palettes import CITYSCAPES_CLASSES, VOC_CLASSES

    if num_classes == len(VOC_CLASSES):
        return VOC_CLASSES, "voc"
    if num_classes == len(CITYSCAPES_CLASSES):
        return CITYSCAPES_CLASSES, "cityscapes"
    return tuple(f"class_{index}" for index in range(num_classes)), "voc"


def _inspect_file(path: Path) -> tuple[dict, str, int | None]:
    """A checkpoint file's object, detected layout and class count (tensors memory-mapped)."""
    from segcli.checkpoints.loading import adapt_layout, classifier_num_classes, detect_layout, read_checkpoint_file

    obj = read_checkpoint_file(path, mmap=True)
    layout = detect_layout(obj)
    return obj, layout, classifier_num_classes(adapt_layout(obj, layout).state_dict)


def record_from_file(model: str, path: Path) -> CheckpointRecord:
    """A record for a checkpoint file that no manifest entry names.

    segcli files carry their record; other files borrow the model's default record (same layout
    preferred) for preprocessing and class names, with the class count read from the classifier.
    """
    from segcli.checkpoints.loading import TRAINING_RECORD_KEY, read_segcli_metadata

    model = _canonical(model)
    metadata = read_segcli_metadata(path)
    stored = metadata.record if metadata is not None else None
    if stored is None:
        obj, layout, num_classes = _inspect_file(path)
        if isinstance(obj.get(TRAINING_RECORD_KEY), dict):
            stored = CheckpointRecord.from_dict(obj[TRAINING_RECORD_KEY])
    if stored is not None:
        if stored.model != model:
            raise CheckpointError(f"{path.name} was trained for model {stored.model}, not {model}; "
                                  f"pass --model {stored.model}")
        return dataclasses.replace(stored, filename=path.name, url=None, sha256=None)
    known = records_for_model(model)
    for record in known:
        if record.filename == path.name:
            return record
    default = next((record for record in known if record.layout == layout), known[0] if known else None)
    if default is not None and num_classes in (None, default.num_classes):
        categories, palette = default.categories, default.palette
        preprocessing, model_kwargs = default.preprocessing, default.model_kwargs
    elif num_classes is None:
        raise CheckpointError(f"cannot tell how many classes {path} predicts and segcli has no record for "
                              f"{model}; add it with `segcli weights add {path} --name NAME --model {model} "
                              f"--classes a,b,c`")
    else:
        categories, palette = _fallback_categories(num_classes)
        preprocessing = default.preprocessing if default is not None else (
            CAFFE_PREPROCESSING if layout == "pytorch-fcn" else IMAGENET_PREPROCESSING)
        model_kwargs = default.model_kwargs if default is not None else ()
    return CheckpointRecord(
        name=path.stem, model=model, dataset="unknown", categories=categories, filename=path.name,
        layout=layout, palette=palette, preprocessing=preprocessing, model_kwargs=model_kwargs,
        notes=f"built from {path.name}: layout {layout}, {len(categories)} classes"
              f"{f', settings of {default.name}' if default is not None else ''}",
    )


def _fetch(record: CheckpointRecord, progress: bool) -> ResolvedCheckpoint:
    from segcli.checkpoints.download import download_file

    destination = download_file(record.url, segcli_checkpoint_dir() / record.filename, record.sha256,
                                progress=progress)
    return ResolvedCheckpoint(record, destination, SOURCE_DOWNLOAD)


def _verified(record: CheckpointRecord, path: Path, source: str) -> ResolvedCheckpoint:
    """A file found on disk, checked against its record's SHA-256 (when one is recorded)."""
    from segcli.checkpoints.download import digest_matches, sha256_of
    from segcli.errors import ChecksumMismatchError

    if record.sha256:
        actual = sha256_of(path)
        if not digest_matches(actual, record.sha256):
            raise ChecksumMismatchError(
                f"{path} does not match checkpoint {record.name}: SHA-256 {actual}, expected "
                f"{record.sha256}; delete it and run `segcli weights pull {record.name}`")
    return ResolvedCheckpoint(record, path, source)


def _resolve_record(record: CheckpointRecord, allow_download: bool, progress: bool) -> ResolvedCheckpoint:
    found = find_on_disk(record)
    if found is not None:
        return _verified(record, *found)
    if record.url and allow_download:
        return _fetch(record, progress)
    raise CheckpointError(f"checkpoint {record.name} is not on disk: {missing_checkpoint_hint(record)}")


def _resolve_default(model: str, allow_download: bool, progress: bool) -> ResolvedCheckpoint:
    records = records_for_model(model)
    if not records:
        raise CheckpointError(f"segcli knows no checkpoint for {model}: pass --weights FILE or train one "
                              f"with `segcli train --model {model}`")
    published = [record for record in records if record.layout != "segcli"]
    own = [record for record in records if record.layout == "segcli"]
    for record in published + own:
        found = find_on_disk(record)
        if found is not None:
            return _verified(record, *found)
    downloadable = [record for record in published if record.url]
    if allow_download and downloadable:
        return _fetch(downloadable[0], progress)
    suggestion = (downloadable or records)[0]
    raise CheckpointError(f"no checkpoint for {model} on disk: {missing_checkpoint_hint(suggestion)}, "
                          f"or pass --weights FILE (known: {', '.join(record.name for record in records)})")


def real_checkpoint_hint(resolved: ResolvedCheckpoint) -> str | None:
    """When a segcli-trained checkpoint stands in for a published one: how to get the real one."""
    if resolved.record.layout != "segcli" or resolved.source != SOURCE_SHIPPED:
        return None
    published = [record for record in records_for_model(resolved.record.model) if record.layout != "segcli"]
    if not published:
        return (f"{resolved.record.name} was trained by segcli on procedural scenes only; "
                f"for real images pass --weights FILE")
    best = next((record for record in published if record.url), published[0])
    how = f"segcli weights pull {best.name}" if best.url else missing_checkpoint_hint(best)
    return (f"{resolved.record.name} was trained by segcli on procedural scenes only; "
            f"for real images get a published checkpoint: {how}")


def resolve_checkpoint(model: str | None, weights: str | None = None, *, allow_download: bool = False,
                       progress: bool = True) -> ResolvedCheckpoint:
    """Find the checkpoint file for `model` (`weights`: manifest name, file path, or None for the default).

    `model=None` takes the model from the named record.
    """
    if weights is not None and weights.lower().endswith(".onnx"):  # a graph from `segcli export`, run by onnxruntime
        from segcli.export.runtime import onnx_graph_record
        return ResolvedCheckpoint(onnx_graph_record(model, weights), Path(weights).expanduser(), SOURCE_PATH)
    if weights is not None and _looks_like_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {weights} does not exist")
        if model is None:
            raise CheckpointError(f"say which model {path.name} is for with --model")
        return ResolvedCheckpoint(record_from_file(model, path), path, SOURCE_PATH)
    if weights is not None:
        record = find_record(weights)
        if model is not None and _canonical(model) != record.model:
            raise CheckpointError(f"checkpoint {record.name} is for model {record.model}, not {model}; "
                                  f"pass --model {record.model}")
        return _resolve_record(record, allow_download, progress)
    if model is None:
        raise CheckpointError("give a model (--model) or a checkpoint (--weights)")
    return _resolve_default(_canonical(model), allow_download, progress)




# --- what `segcli weights pull / add / verify` do ---------------------------------------------

_NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


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
        raise CheckpointError(f"{record.name} has no public download: {missing_checkpoint_hint(record)}")
    found = None if force else find_on_disk(record)
    return ResolvedCheckpoint(record, *found) if found is not None else _fetch(record, progress)


def add_checkpoint_file(path: str | Path, name: str, model: str, *, dataset: str | None = None,
                        categories: tuple[str, ...] | None = None, palette: str | None = None,
                        layout: str | None = None) -> ResolvedCheckpoint:
    """Copy a checkpoint into segcli's cache and record it (with its SHA-256) in the user manifest."""
    import shutil
    import tempfile

    from segcli.checkpoints.download import sha256_of
    from segcli.checkpoints.manifest import add_user_record, validate_record

    path = Path(path).expanduser()
    if not name or set(name) - _NAME_CHARACTERS:
        raise CheckpointError(f"checkpoint name {name!r} may only use letters, digits, '.', '_' and '-'")
    if name in load_manifest():
        raise CheckpointError(f"a checkpoint called {name!r} already exists; choose another --name")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    base = record_from_file(model, path)
    _, _, num_classes = _inspect_file(path)
    if categories is not None and num_classes is not None and len(categories) != num_classes:
        raise CheckpointError(f"{path.name} predicts {num_classes} classes but {len(categories)} class names "
                              f"were given")
    filename = f"{name}{path.suffix}"
    record = dataclasses.replace(
        base, name=name, model=_canonical(model), dataset=dataset or base.dataset,
        categories=tuple(categories) if categories is not None else base.categories,
        palette=palette or base.palette, layout=layout or base.layout, filename=filename,
        url=None, sha256=sha256_of(path), notes=f"added with `segcli weights add` from {path}",
    )
    validate_record(record, "the new record")
    destination = segcli_checkpoint_dir() / filename
    if destination.exists():
        raise CheckpointError(f"{destination} already exists; remove it or choose another --name")
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{filename}.", suffix=".part")
    try:
        with open(handle, "wb", closefd=True) as sink, open(path, "rb") as source:
            shutil.copyfileobj(source, sink, 1 << 20)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    try:
        add_user_record(record)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return ResolvedCheckpoint(record, destination, SOURCE_SEGCLI_CACHE)


def verify_checkpoints(names: list[str] | None = None) -> list[FileCheck]:
    """Hash every copy on disk of the named records (all records when `names` is empty)."""
    from segcli.checkpoints.download import digest_matches, sha256_of

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
