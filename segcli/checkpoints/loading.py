"""Read checkpoint files safely, adapt published layouts, load strictly, save segcli checkpoints.

Only `torch.load(..., weights_only=True)` and safetensors are used: a file that would run code
when unpickled is refused. Loading is strict: a checkpoint that does not fit the model raises a
CheckpointError listing missing keys, unexpected keys and shape mismatches.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from segcli.checkpoints.record import LAYOUTS, CheckpointRecord
from segcli.errors import CheckpointError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from segcli.checkpoints.resolve import ResolvedCheckpoint

SAFETENSORS_SUFFIX = ".safetensors"
RECORD_METADATA_KEY = "segcli.record"
EXTRA_METADATA_KEY = "segcli.extra"
TRAINING_RECORD_KEY = "segcli_record"  # record dict stored in segcli training checkpoints
WRAPPER_KEYS = ("model_state", "state_dict")  # DeepLabV3Plus-Pytorch, Lightning-style and segcli training files
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError,
                zipfile.BadZipFile, AttributeError, TypeError, IndexError)
_REPORT_ITEMS = 3


class AdaptedStateDict(NamedTuple):
    state_dict: dict[str, "Tensor"]  # keys as the zoo model names them
    notes: list[str]                 # what was changed on the way (one line each), for the user


class SegcliFileMetadata(NamedTuple):
    record: CheckpointRecord
    extra: dict[str, Any]


def _numpy_scalar_globals() -> list[Any]:
    """numpy scalars/dtypes that training scripts store next to the weights (e.g. `best_score`)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    allowed: list[Any] = [core.multiarray.scalar, (core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype]
    allowed += [getattr(np.dtypes, name) for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType")
                if hasattr(getattr(np, "dtypes", None), name)]
    return allowed


def _read_safetensors(path: Path) -> dict[str, "Tensor"]:
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file, or truncated ({exc})") from None
    # shipped files may be stored in float16; models run in float32
    return {key: value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
            for key, value in tensors.items()}


def read_checkpoint_file(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, Any]:
    """The object stored in a checkpoint file (a dict), read without running any code.

    `mmap=True` maps tensors instead of reading them (cheap peeks at shapes).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as exc:
                if not (mmap and "mmap" in str(exc)):
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointError(
                f"refusing to load {path}: it holds Python objects other than tensors, and unpickling it "
                f"could run code. Re-save only the state dict (torch.save(model.state_dict(), ...))"
            ) from None
        raise CheckpointError(f"cannot read {path}: not a PyTorch checkpoint ({exc})") from None
    except _LOAD_ERRORS as exc:
        raise CheckpointError(f"cannot read {path}: the file is truncated or not a PyTorch checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                              f"download or copy it again") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def detect_layout(obj: dict[str, Any]) -> str:
    """Guess a file's layout from its keys."""
    if isinstance(obj.get(TRAINING_RECORD_KEY), dict):
        return "segcli"
    if "model_state" in obj:
        return "deeplabv3plus-pytorch"
    keys = _unwrap(obj).keys()
    if any(key.removeprefix("module.") == "conv1_1.weight" for key in keys):
        return "pytorch-fcn"
    if any(key.startswith("aux_classifier.") for key in keys):
        return "torchvision"
    return "segcli"


def _unwrap(obj: dict[str, Any]) -> dict[str, Any]:
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def adapt_layout(obj: dict[str, Any], layout: str, model_keys: set[str] | None = None) -> AdaptedStateDict:
    """Turn a file's object into a state dict with the zoo model's keys.

    Unwraps `model_state` / `state_dict`, strips a `module.` (DataParallel) prefix and, when
    `model_keys` is given, drops torchvision's training-only `aux_classifier.*` if the model has
    no aux head and renames DeepLabV3Plus-Pytorch's DeepLab v3 head (`classifier.classifier.*`)
    when the model names it `classifier.*`.
    """
    import torch

    if layout not in LAYOUTS:
        raise CheckpointError(f"unknown checkpoint layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    notes: list[str] = []
    inner = _unwrap(obj)
    if inner is not obj:
        wrapper = next(key for key in WRAPPER_KEYS if obj.get(key) is inner)
        notes.append(f"took the weights from {wrapper!r}, ignored {len(obj) - 1} other entries")
    non_tensors = [key for key, value in inner.items() if not isinstance(value, torch.Tensor)]
    if non_tensors:
        raise CheckpointError(f"checkpoint entries are not tensors: {', '.join(non_tensors[:_REPORT_ITEMS])}"
                              f"{' ...' if len(non_tensors) > _REPORT_ITEMS else ''}; is it a state dict?")
    state = dict(inner)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
        notes.append("stripped the 'module.' prefix (saved from DataParallel)")
    if model_keys is not None:
        aux = [key for key in state if key.startswith("aux_classifier.")]
        if aux and not any(key.startswith("aux_classifier.") for key in model_keys):
            state = {key: value for key, value in state.items() if not key.startswith("aux_classifier.")}
            notes.append(f"dropped {len(aux)} training-only aux_classifier.* tensors (the model has no aux head)")
        nested = [key for key in state if key.startswith("classifier.classifier.")]
        head_keys = {key for key in state if key.startswith("classifier.")}
        if nested and len(nested) == len(head_keys) and not (head_keys & model_keys):
            if {_flatten_head(key) for key in nested} <= model_keys:
                state = {(_flatten_head(key) if key in head_keys else key): value for key, value in state.items()}
                notes.append("renamed the DeepLab v3 head classifier.classifier.* -> classifier.*")
    return AdaptedStateDict(state, notes)


def _flatten_head(key: str) -> str:
    """DeepLabV3Plus-Pytorch's `classifier.classifier.N.*` (DeepLab v3 head) -> `classifier.N.*`."""
    return "classifier." + key.removeprefix("classifier.classifier.")


def read_state_dict(path: str | os.PathLike[str], layout: str | None = None) -> dict[str, "Tensor"]:
    """The tensors of a checkpoint file, unwrapped (layout detected when not given)."""
    obj = read_checkpoint_file(path)
    return adapt_layout(obj, layout or detect_layout(obj)).state_dict


def classifier_num_classes(state_dict: dict[str, "Tensor"]) -> int | None:
    """The class count a state dict predicts: output channels of its last 4-D weight (the classifier)."""
    last = None
    for key, value in state_dict.items():
        if key.endswith("weight") and value.ndim == 4 and not key.startswith("aux_classifier."):
            last = value
    return int(last.shape[0]) if last is not None else None


def _shape(values: Any) -> str:
    return "[" + ",".join(str(size) for size in values) + "]"


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_REPORT_ITEMS])
    return shown + (", ..." if len(keys) > _REPORT_ITEMS else "")


def key_mismatch_report(model_state: dict[str, "Tensor"], checkpoint: dict[str, "Tensor"]) -> str | None:
    """One line on missing / unexpected keys and shape mismatches, or None when the checkpoint fits."""
    # old checkpoints lack BatchNorm's num_batches_tracked counter; it is not a weight
    missing = [key for key in model_state if key not in checkpoint and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in checkpoint if key not in model_state]
    mismatched = [f"{key}: checkpoint {_shape(checkpoint[key].shape)} vs model {_shape(value.shape)}"
                  for key, value in model_state.items()
                  if key in checkpoint and tuple(checkpoint[key].shape) != tuple(value.shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key{'s' * (len(missing) != 1)} ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatch{'es' * (len(mismatched) != 1)} ({_listed(mismatched)})")
    return ", ".join(parts) if parts else None


def load_weights(model: "nn.Module", state_dict: dict[str, "Tensor"], source_name: str,
                 model_name: str | None = None) -> None:
    """Load strictly: any missing / unexpected key or shape mismatch raises a one-line CheckpointError."""
    report = key_mismatch_report(model.state_dict(), state_dict)
    if report is not None:
        raise CheckpointError(f"checkpoint {source_name} does not fit {model_name or type(model).__name__}: "
                              f"{report} — is it for another model or class count?")
    model.load_state_dict(state_dict, strict=False)  # strictness checked above (num_batches_tracked may be absent)


def load_checkpoint(model: "nn.Module", path: str | os.PathLike[str], layout: str | None = None,
                    model_name: str | None = None) -> list[str]:
    """Read, adapt and strictly load a checkpoint file into `model`; returns the adaptation notes."""
    obj = read_checkpoint_file(path)
    adapted = adapt_layout(obj, layout or detect_layout(obj), set(model.state_dict()))
    load_weights(model, adapted.state_dict, Path(path).name, model_name)
    return adapted.notes


def load_checkpoint_model(resolved: "ResolvedCheckpoint", notes: list[str] | None = None) -> "nn.Module":
    """Build the record's zoo model and load the resolved file into it strictly (eval mode).

    What the layout adaptation changed is appended to `notes` when a list is given.
    """
    from segcli.models import build_model

    if resolved.path.suffix.lower() == ".onnx":  # an exported graph: onnxruntime behind an nn.Module
        from segcli.export.runtime import OnnxRuntimeModel
        return OnnxRuntimeModel(resolved.path)
    record = resolved.record
    model = build_model(record.model, record.num_classes, **record.kwargs)
    adaptation = load_checkpoint(model, resolved.path, record.layout, model_name=record.model)
    if notes is not None:
        notes.extend(adaptation)
    return model.eval()


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would survive the rename
    return Path(temporary)


def save_segcli_checkpoint(path: str | os.PathLike[str], model: "nn.Module | dict[str, Tensor]",
                           record: CheckpointRecord, extra: dict[str, Any] | None = None,
                           half: bool = False) -> Path:
    """Write a segcli safetensors file with `record` (layout "segcli") in its metadata, atomically.

    `half=True` stores floating tensors as float16 (shipped files); they load back as float32.
    """
    import dataclasses

    import torch
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise CheckpointError(f"segcli checkpoints are {SAFETENSORS_SUFFIX} files, got {path.name}")
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {}
    for key, value in state.items():
        value = value.detach().to("cpu")
        if half and value.is_floating_point():
            value = value.to(torch.float16)
        tensors[key] = value.contiguous().clone()  # safetensors refuses shared storage
    stored = dataclasses.replace(record, layout="segcli", filename=path.name)
    metadata = {"format": "pt", RECORD_METADATA_KEY: json.dumps(stored.to_dict()),
                EXTRA_METADATA_KEY: json.dumps(extra or {})}
    temporary = _atomic_target(path)
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_segcli_metadata(path: str | os.PathLike[str]) -> SegcliFileMetadata | None:
    """The record and extra data stored in a segcli safetensors file; None for other files."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file, or truncated ({exc})") from None
    if RECORD_METADATA_KEY not in metadata:
        return None
    try:
        record = CheckpointRecord.from_dict(json.loads(metadata[RECORD_METADATA_KEY]))
        extra = json.loads(metadata.get(EXTRA_METADATA_KEY, "{}"))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the segcli record in its metadata is malformed ({exc!r})") from None
    return SegcliFileMetadata(record, extra)


def save_training_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Save a resumable training state (tensors, numbers, strings, nested dicts/lists) atomically.

    The file loads back with `read_checkpoint_file` (weights_only=True); put the model's weights
    under "model_state" and `record.to_dict()` under "segcli_record" so `--weights FILE` can use it.
    """
    import torch

    path = Path(path)
    temporary = _atomic_target(path)
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
