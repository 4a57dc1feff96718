"""Write segcli's own checkpoint files atomically (through `segcli.atomic`, one file mode).

`save_segcli_checkpoint`: safetensors with the record in the metadata (what `segcli train` and
the shipped files are). `save_training_checkpoint`: a resumable training state that loads back
with `torch.load(weights_only=True)`. Both are importable from `segcli.checkpoints.loading` too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segcli.atomic import atomic_write
from segcli.checkpoints.record import CheckpointRecord
from segcli.errors import CheckpointError, OutputError

if TYPE_CHECKING:
    from torch import Tensor, nn

SAFETENSORS_SUFFIX = ".safetensors"
RECORD_METADATA_KEY = "segcli.record"
EXTRA_METADATA_KEY = "segcli.extra"
TRAINING_RECORD_KEY = "segcli_record"  # record dict stored in segcli training checkpoints


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from None


def save_segcli_checkpoint(path: str | os.PathLike[str], model: "nn.Module | dict[str, Tensor]",
                           record: CheckpointRecord, extra: dict[str, Any] | None = None,
                           half: bool = False) -> Path:
    """Write a segcli safetensors file with `record` (layout "segcli") in its metadata, atomically.

    `half=True` stores floating tensors as float16 (shipped files); they load back as float32.
    """
    import dataclasses

    import torch
    from safetensors.torch import save as safetensors_bytes

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
    _make_parent(path)
    atomic_write(path, lambda handle: handle.write(safetensors_bytes(tensors, metadata=metadata)))
    return path


def save_training_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Save a resumable training state (tensors, numbers, strings, nested dicts/lists) atomically.

    The file loads back with `read_checkpoint_file` (weights_only=True); put the model's weights
    under "model_state" and `record.to_dict()` under "segcli_record" so `--weights FILE` can use it.
    """
    import torch

    path = Path(path)
    _make_parent(path)
    atomic_write(path, lambda handle: torch.save(state, handle))
    return path
