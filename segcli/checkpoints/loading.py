"""Read checkpoint files safely, detect and adapt published layouts, load strictly.

Writing segcli's own files lives in `saving.py`; graph formats (ONNX) in `formats.py`.

Only `torch.load(..., weights_only=True)` and safetensors are used: a file that would run code
when unpickled is refused. Loading is strict: a checkpoint that does not fit the model raises a
CheckpointError listing missing keys, unexpected keys and shape mismatches.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from segcli.checkpoints.archive import check_torch_file, torch_error_reason
from segcli.checkpoints.formats import graph_format
from segcli.checkpoints.record import LAYOUTS, CheckpointRecord, ResolvedCheckpoint, parse_record
from segcli.checkpoints.saving import (EXTRA_METADATA_KEY, RECORD_METADATA_KEY, SAFETENSORS_SUFFIX,
                                       TRAINING_RECORD_KEY)
from segcli.errors import CheckpointError, UnknownNameError
from segcli.models import LAYOUT_SPECS

if TYPE_CHECKING:
    from torch import Tensor, nn

# the wrapper entries of published layouts (DeepLabV3Plus-Pytorch's model_state), then Lightning-style and
# segcli training files' state_dict
WRAPPER_KEYS = tuple(layout.wrapper for layout in LAYOUT_SPECS if layout.wrapper) + ("state_dict",)
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError,
                zipfile.BadZipFile, AttributeError, TypeError, IndexError)
_REPORT_ITEMS = 3
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32; the zoo's largest (FCN-8s, VGG16) has about 134 million


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
    check_torch_file(path)  # zip bombs and TorchScript archives, before torch reads anything
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
        raise CheckpointError(f"cannot read {path}: not a PyTorch checkpoint ({torch_error_reason(exc)})") from None
    except _LOAD_ERRORS as exc:
        raise CheckpointError(f"cannot read {path}: the file is truncated or not a PyTorch checkpoint "
                              f"({torch_error_reason(exc)}); download or copy it again") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def detect_layout(obj: dict[str, Any]) -> str:
    """Guess a file's layout from its keys: segcli's training files by their record, then the markers
    of segcli.models.LAYOUT_SPECS (wrapper entries first, then keys, each in table order)."""
    if isinstance(obj.get(TRAINING_RECORD_KEY), dict):
        return "segcli"
    for layout in LAYOUT_SPECS:
        if layout.wrapper is not None and layout.wrapper in obj:
            return layout.name
    keys = {key.removeprefix("module.").removeprefix("Scale.") for key in _unwrap(obj)}
    for layout in LAYOUT_SPECS:
        marker = layout.key
        if marker is not None and (any(key.startswith(marker) for key in keys) if marker.endswith(".")
                                   else marker in keys):
            return layout.name
    return "segcli"


def _rename_to_zoo_keys(layout: str, state: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Published layouts whose key names a zoo module translates (the adapter lives beside the model)."""
    from segcli.models import LAYOUTS, layout_adapter

    adapter = layout_adapter(LAYOUTS[layout])
    if adapter is None:
        return state
    notes.append(LAYOUTS[layout].adapter_note)
    return adapter(state)


def _unwrap(obj: dict[str, Any]) -> dict[str, Any]:
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def adapt_layout(obj: dict[str, Any], layout: str, model_keys: set[str] | None = None) -> AdaptedStateDict:
    """Turn a file's object into a state dict with the zoo model's keys.

    Unwraps `model_state` / `state_dict`, strips a `module.` (DataParallel) prefix, renames keys with
    the layout's adapter (segcli.models.LAYOUT_SPECS; isht7/speedinghzl DeepLab v2) and, when
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
    state = _rename_to_zoo_keys(layout, state, notes)
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


@functools.lru_cache(maxsize=32)
def model_class_keys(model: str, model_kwargs: tuple[tuple[str, Any], ...] = ()) -> tuple[tuple[str, ...], frozenset[str]]:
    """The zoo model's state-dict keys whose first dimension is the class count, and all its keys.

    Found by building the model for 1 and for 2 classes on the meta device (no memory, no
    initialisation cost), so every model and layout is covered without a table of names.
    """
    import torch

    from segcli.models import build_model

    with torch.device("meta"):
        one = build_model(model, 1, **dict(model_kwargs)).state_dict()
        two = build_model(model, 2, **dict(model_kwargs)).state_dict()
    class_keys = tuple(key for key, value in one.items()
                       if value.ndim and value.shape[0] == 1 and two[key].shape[0] == 2)
    return class_keys, frozenset(one)


def checkpoint_num_classes(obj: dict[str, Any], layout: str, model: str,
                           model_kwargs: tuple[tuple[str, Any], ...] = ()) -> int | None:
    """How many classes a checkpoint's object predicts for `model`, or None when it holds no classifier.

    Read from the model's classifier keys by name, never from tensor order (safetensors sorts keys).
    """
    class_keys, model_keys = model_class_keys(model, tuple(model_kwargs))
    state = adapt_layout(obj, layout, set(model_keys)).state_dict
    for key in class_keys:
        if key in state and state[key].ndim:
            return int(state[key].shape[0])
    return None


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


def _require_fit(model_state: dict[str, "Tensor"], state_dict: dict[str, "Tensor"], source_name: str,
                 model_name: str) -> None:
    report = key_mismatch_report(model_state, state_dict)
    if report is not None:
        raise CheckpointError(f"checkpoint {source_name} does not fit {model_name}: "
                              f"{report} — is it for another model or class count?")


def load_weights(model: "nn.Module", state_dict: dict[str, "Tensor"], source_name: str,
                 model_name: str | None = None) -> None:
    """Load strictly: any missing / unexpected key or shape mismatch raises a one-line CheckpointError."""
    _require_fit(model.state_dict(), state_dict, source_name, model_name or type(model).__name__)
    model.load_state_dict(state_dict, strict=False)  # strictness checked above (num_batches_tracked may be absent)


def load_checkpoint(model: "nn.Module", path: str | os.PathLike[str], layout: str | None = None,
                    model_name: str | None = None) -> list[str]:
    """Read, adapt and strictly load a checkpoint file into `model`; returns the adaptation notes."""
    obj = read_checkpoint_file(path)
    adapted = adapt_layout(obj, layout or detect_layout(obj), set(model.state_dict()))
    load_weights(model, adapted.state_dict, Path(path).name, model_name)
    return adapted.notes


def _build(record: CheckpointRecord, path: Path) -> "nn.Module":
    """The record's zoo model (on the default device, or the meta device inside `with torch.device("meta")`);
    options a record carries (possibly one stored in the file itself) that do not build it: one error line."""
    from segcli.models import build_model

    try:
        return build_model(record.model, record.num_classes, **record.kwargs)
    except (UnknownNameError, ValueError, ArithmeticError) as exc:
        raise CheckpointError(f"{path.name} cannot be loaded: {exc}") from None


def _skeleton_state(record: CheckpointRecord, path: Path) -> dict[str, "Tensor"]:
    """The shapes of the record's model, built on the meta device (no memory, no initialisation), refused
    above MAX_PARAMETERS: a crafted `model_kwargs` (width_mult 1000) must not allocate hundreds of GB."""
    import torch

    with torch.device("meta"):
        state = _build(record, path).state_dict()
    count = sum(value.numel() for value in state.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"{path.name} cannot be loaded: {record.model} with {record.kwargs} would have "
                              f"{count:,} parameters (more than {MAX_PARAMETERS:,}); its record is damaged or crafted")
    return state


def runtime_execution(resolved: ResolvedCheckpoint) -> tuple[str, str] | None:
    """The (device, precision) the checkpoint's format runs in whatever was asked: an exported ONNX graph runs
    on onnxruntime's CPU provider in fp32 (checkpoints/formats.py); None for weights torch runs."""
    graph = graph_format(resolved.path)
    return graph.runs_on if graph is not None else None


def load_checkpoint_model(resolved: ResolvedCheckpoint, notes: list[str] | None = None) -> "nn.Module":
    """Build the record's zoo model and load the resolved file into it strictly (eval mode).

    The file's tensors are checked against the model's shapes on the meta device first; the model is
    built for real only when they fit. What the layout adaptation changed is appended to `notes`.
    """
    from segcli.models.base import set_input_scales

    graph = graph_format(resolved.path)
    if graph is not None:  # an exported graph (ONNX: onnxruntime behind an nn.Module)
        return graph.model(resolved.path, resolved.record)
    record = resolved.record
    shapes = _skeleton_state(record, resolved.path)
    obj = read_checkpoint_file(resolved.path)
    adapted = adapt_layout(obj, record.layout or detect_layout(obj), set(shapes))
    _require_fit(shapes, adapted.state_dict, resolved.path.name, record.model)
    model = _build(record, resolved.path)
    load_weights(model, adapted.state_dict, resolved.path.name, record.model)
    if notes is not None:
        notes.extend(adapted.notes)
    set_input_scales(model, record.input_scales)  # the authors' test protocol (DeepLab v2: MSC)
    return model.eval()


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
    origin = f"{path}: the segcli record in its metadata"
    try:
        stored, extra = json.loads(metadata[RECORD_METADATA_KEY]), json.loads(metadata.get(EXTRA_METADATA_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{origin} is not JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: the segcli.extra metadata must be a JSON object")
    return SegcliFileMetadata(parse_record(stored, origin), extra)
