"""Which checkpoint file a model runs with: `--weights NAME|FILE` or the model's default.

Lookup order: a path given > the torch hub cache > segcli's cache > files shipped in `weights/`
> a download (only with `allow_download=True` and a record that has a URL) > a CheckpointError
that says what to run or where to put the file. Nothing ever falls back to random weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from segcli.checkpoints import manifest
from segcli.checkpoints.download import digest_matches, download_file, sha256_of
from segcli.checkpoints.formats import graph_format
from segcli.checkpoints.loading import checkpoint_num_classes, detect_layout, read_checkpoint_file, read_segcli_metadata
from segcli.checkpoints.saving import TRAINING_RECORD_KEY
from segcli.checkpoints.manifest import (file_exists, find_record, records_for_model, segcli_checkpoint_dir,
                                         torch_hub_checkpoint_dir, writable_folder)
from segcli.checkpoints.record import (CAFFE_PREPROCESSING, IMAGENET_PREPROCESSING, SOURCE_DOWNLOAD, SOURCE_PATH,
                                       SOURCE_SEGCLI_CACHE, SOURCE_SHIPPED, SOURCE_TORCH_HUB, SYNTHETIC_DATASET,
                                       CheckpointRecord, ResolvedCheckpoint, parse_record)
from segcli.errors import CheckpointError, ChecksumMismatchError, SyntheticScenesWarning
from segcli.models import LAYOUTS, MODEL_NAMES

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".bin", ".tar")
WEIGHTS_HINT = "or pass --weights FILE"  # what the command line adds to a missing checkpoint's advice


def checkpoint_locations(record: CheckpointRecord) -> list[tuple[Path, str]]:
    """Where a record's file may be on disk, in lookup order."""
    return [
        (torch_hub_checkpoint_dir() / record.filename, SOURCE_TORCH_HUB),
        (segcli_checkpoint_dir() / record.filename, SOURCE_SEGCLI_CACHE),
        (manifest.shipped_weights_dir() / record.filename, SOURCE_SHIPPED),
    ]


def files_on_disk(record: CheckpointRecord) -> list[tuple[Path, str]]:
    """Every copy of a record's file that exists, in lookup order."""
    return [(path, source) for path, source in checkpoint_locations(record) if file_exists(path)]


def find_on_disk(record: CheckpointRecord) -> tuple[Path, str] | None:
    """The first copy of a record's file in lookup order, or None."""
    found = files_on_disk(record)
    return found[0] if found else None


def missing_checkpoint_hint(record: CheckpointRecord) -> str:
    """What the user should do to get a record's file: one clause, no final period (the command line adds
    WEIGHTS_HINT)."""
    if record.url:
        return f"run `segcli weights pull {record.name}`"
    if record.layout == "segcli":
        return (f"the shipped file {manifest.shipped_weights_dir() / record.filename} is missing; reinstall segcli "
                f"or train one (`segcli train`)")
    where = record.notes.strip().rstrip(".") if record.notes else "it has no public download"
    return f"put {record.filename} in {segcli_checkpoint_dir()} ({where})"


def _looks_like_path(weights: str) -> bool:
    return Path(weights).expanduser().is_file() or "/" in weights or "\\" in weights or \
        weights.endswith(CHECKPOINT_SUFFIXES)


def canonical_model(model: str) -> str:
    """The zoo name behind a model name or alias."""
    from segcli.models import canonical_name

    return canonical_name(model)


def _fallback_categories(num_classes: int) -> tuple[tuple[str, ...], str]:
    from segcli.palettes import CITYSCAPES_CLASSES, VOC_CLASSES

    if num_classes == len(VOC_CLASSES):
        return VOC_CLASSES, "voc"
    if num_classes == len(CITYSCAPES_CLASSES):
        return CITYSCAPES_CLASSES, "cityscapes"
    return tuple(f"class_{index}" for index in range(num_classes)), "voc"


def _inspect_file(path: Path) -> tuple[dict, str]:
    """A checkpoint file's object and detected layout (tensors memory-mapped)."""
    obj = read_checkpoint_file(path, mmap=True)
    return obj, detect_layout(obj)


def record_from_file(model: str, path: Path) -> CheckpointRecord:
    """A record for a checkpoint file that no manifest entry names.

    segcli files carry their record; other files borrow the model's default record (same layout
    preferred) for preprocessing and class names, with the class count read from the classifier.
    """
    model = canonical_model(model)
    metadata = read_segcli_metadata(path)
    stored = metadata.record if metadata is not None else None
    if stored is None:
        obj, layout = _inspect_file(path)
        if isinstance(obj.get(TRAINING_RECORD_KEY), dict):
            stored = parse_record(obj[TRAINING_RECORD_KEY], f"{path}: the segcli record in the file")
    if stored is not None:
        if stored.model not in MODEL_NAMES:
            raise CheckpointError(f"{path}: the segcli record in the file names model {stored.model!r}, which is "
                                  f"not in segcli's zoo (see `segcli models`)")
        if stored.model != model:
            raise CheckpointError(f"{path.name} was trained for model {stored.model}, not {model}",
                                  hint=f"pass --model {stored.model}")
        return dataclasses.replace(stored, filename=path.name, url=None, sha256=None)
    known = records_for_model(model)
    for record in known:
        if record.filename == path.name:
            return record
    default = next((record for record in known if record.layout == layout), known[0] if known else None)
    num_classes = checkpoint_num_classes(obj, layout, model, default.model_kwargs if default is not None else ())
    if default is not None and num_classes in (None, default.num_classes):
        categories, palette = default.categories, default.palette
        preprocessing, model_kwargs = default.preprocessing, default.model_kwargs
    elif num_classes is None:
        raise CheckpointError(f"cannot tell how many classes {path} predicts and segcli has no record for {model}",
                              hint=f"add it with `segcli weights add {path} --name NAME --model {model} "
                                   f"--classes a,b,c`")
    else:
        categories, palette = _fallback_categories(num_classes)
        preprocessing = default.preprocessing if default is not None else (
            CAFFE_PREPROCESSING if LAYOUTS[layout].caffe_input else IMAGENET_PREPROCESSING)
        model_kwargs = default.model_kwargs if default is not None else ()
    # a renamed published file keeps its authors' test protocol (multi-scale inputs, CRF settings)
    same_layout = default is not None and default.layout == layout
    return CheckpointRecord(
        name=path.stem, model=model, dataset="unknown", categories=categories, filename=path.name,
        layout=layout, palette=palette, preprocessing=preprocessing, model_kwargs=model_kwargs,
        input_scales=default.input_scales if same_layout else (1.0,),
        crf_defaults=default.crf_defaults if same_layout else (),
        notes=f"built from {path.name}: layout {layout}, {len(categories)} classes"
              f"{f', settings of {default.name}' if default is not None else ''}",
    )


def fetch(record: CheckpointRecord, progress: bool) -> ResolvedCheckpoint:
    """Download a record's file into segcli's cache (checked against its SHA-256)."""
    destination = download_file(record.url, writable_folder(segcli_checkpoint_dir()) / record.filename, record.sha256,
                                progress=progress)
    return ResolvedCheckpoint(record, destination, SOURCE_DOWNLOAD)


def _verified(record: CheckpointRecord, path: Path, source: str) -> ResolvedCheckpoint:
    """A file found on disk, checked against its record's SHA-256 (when one is recorded)."""
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
        return fetch(record, progress)
    raise CheckpointError(f"checkpoint {record.name} is not on disk: {missing_checkpoint_hint(record)}",
                          hint=WEIGHTS_HINT)


def default_on_disk(model: str) -> tuple[CheckpointRecord, Path, str] | None:
    """The checkpoint `--model MODEL` would use now without downloading (not hashed): a published one
    on disk first, else one of segcli's own; None when the model has none on disk."""
    records = records_for_model(model)
    published = [record for record in records if record.layout != "segcli"]
    own = [record for record in records if record.layout == "segcli"]
    for record in published + own:
        found = find_on_disk(record)
        if found is not None:
            return (record, *found)
    return None


def _resolve_default(model: str, allow_download: bool, progress: bool) -> ResolvedCheckpoint:
    records = records_for_model(model)
    if not records:
        raise CheckpointError(f"segcli knows no checkpoint for {model}: give a checkpoint file (weights)",
                              hint=f"pass --weights FILE or train one with `segcli train --model {model}`")
    on_disk = default_on_disk(model)
    if on_disk is not None:
        return _verified(*on_disk)
    downloadable = [record for record in records if record.layout != "segcli" and record.url]
    if allow_download and downloadable:
        return fetch(downloadable[0], progress)
    suggestion = (downloadable or records)[0]
    raise CheckpointError(f"no checkpoint for {model} on disk: {missing_checkpoint_hint(suggestion)} "
                          f"(known: {', '.join(record.name for record in records)})", hint=WEIGHTS_HINT)


def synthetic_scenes_warning(record: CheckpointRecord) -> SyntheticScenesWarning | None:
    """The warning every user of a checkpoint trained on segcli's synthetic scenes gets, or None.

    The one decision behind the CLI's `Warning:` line (message; hint), the per-image JSON `note` (the message)
    and the Python API's warning (the message); it names the published checkpoint to use for photographs.
    """
    if record.dataset != SYNTHETIC_DATASET:
        return None
    text = (f"{record.name} was trained only on segcli's synthetic scenes (procedural shapes), "
            f"not photographs: do not expect meaningful masks of real images")
    published = [other for other in records_for_model(record.model) if other.dataset != SYNTHETIC_DATASET] \
        if record.model in MODEL_NAMES else []
    if not published:
        return SyntheticScenesWarning(f"{text}; for real images load weights trained on photographs",
                                      hint="pass --weights FILE")
    best = next((other for other in published if other.url), published[0])
    if best.url:
        return SyntheticScenesWarning(f"{text}; for real images use a published checkpoint: {best.name}",
                                      hint=f"fetch it with segcli weights pull {best.name}")
    return SyntheticScenesWarning(f"{text}; for real images use a published checkpoint: {best.name} "
                                  f"(put {best.filename} in {segcli_checkpoint_dir()})")


def resolve_checkpoint(model: str | None, weights: str | None = None, *, allow_download: bool = False,
                       progress: bool = True) -> ResolvedCheckpoint:
    """Find the checkpoint file for `model` (`weights`: manifest name, file path, or None for the default).

    `model=None` takes the model from the named record.
    """
    graph = graph_format(weights) if weights is not None else None
    if graph is not None:  # a graph file (ONNX from `segcli export`): its record is in the file
        return ResolvedCheckpoint(graph.record(model, weights), Path(weights).expanduser(), SOURCE_PATH)
    if weights is not None and _looks_like_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {weights} does not exist")
        if model is None:
            raise CheckpointError(f"no model given: say which model {path.name} is for (model)",
                                  hint="pass --model")
        return ResolvedCheckpoint(record_from_file(model, path), path, SOURCE_PATH)
    if weights is not None:
        record = find_record(weights)
        if model is not None and canonical_model(model) != record.model:
            raise CheckpointError(f"checkpoint {record.name} is for model {record.model}, not {model}",
                                  hint=f"pass --model {record.model}")
        return _resolve_record(record, allow_download, progress)
    if model is None:
        raise CheckpointError("no model given: give a model (model) or a checkpoint (weights)",
                              hint="pass --model or --weights")
    return _resolve_default(canonical_model(model), allow_download, progress)
