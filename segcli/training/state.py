"""Resumable state files (`*.state.pt`): weights, optimizer, schedule, iteration, record and config.

They load with `torch.load(weights_only=True)`; `--weights FILE.state.pt` can start another run
from one (its `model_state` and `segcli_record`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcli.checkpoints.archive import check_torch_file, torch_error_reason
from segcli.checkpoints.loading import save_training_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.errors import CheckpointError
from segcli.training.schedule import PolySchedule


def save_state(path: Path, record: CheckpointRecord, model: nn.Module, optimizer: torch.optim.Optimizer,
               schedule: PolySchedule, iteration: int, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_training_checkpoint(path, {
        "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
        "scheduler_state": schedule.state_dict(), "iteration": iteration, "total": schedule.total,
        "segcli_record": record.to_dict(), "config": config,
    })


def read_state(path: Path) -> dict[str, Any]:
    """A state file's contents, or a CheckpointError that says what the file is not."""
    if not path.is_file():
        raise CheckpointError(f"--resume {path}: no such state file")
    check_torch_file(path, f"--resume {path}")  # zip bombs and TorchScript archives, before torch reads it
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"--resume {path}: not a segcli training state ({torch_error_reason(exc)})") from None
    if not isinstance(state, dict) or not {"iteration", "segcli_record", "optimizer_state"} <= set(state):
        raise CheckpointError(f"--resume {path}: not a segcli training state (use a *.state.pt file)")
    return state


def restore_state(path: Path, record: CheckpointRecord, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load weights and optimizer from `path` into the run that `record` describes; returns the state."""
    state = read_state(path)
    saved = CheckpointRecord.from_dict(state["segcli_record"])
    if saved.model != record.model or saved.categories != record.categories or saved.kwargs != record.kwargs:
        raise CheckpointError(f"--resume {path}: it trains {saved.model} {saved.kwargs} on {len(saved.categories)} "
                              f"classes, not {record.model} {record.kwargs} on {len(record.categories)}")
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    return state
