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
from segcli.checkpoints.saving import save_training_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.errors import CheckpointError
from segcli.training.schedule import PolySchedule


RESUME_HINT = "give --resume a state file of this run, or leave --resume out to start afresh"


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
        raise CheckpointError(f"training state {path}: no such state file", hint=RESUME_HINT)
    check_torch_file(path, f"training state {path}")  # zip bombs and TorchScript archives, before torch reads it
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"training state {path}: not a segcli training state ({torch_error_reason(exc)})",
                              hint=RESUME_HINT) from None
    if not isinstance(state, dict) or not {"iteration", "segcli_record", "optimizer_state"} <= set(state):
        raise CheckpointError(f"training state {path}: not a segcli training state (use a *.state.pt file)",
                              hint=RESUME_HINT)
    _check_counts(path, state)
    return state


def _check_counts(path: Path, state: dict[str, Any]) -> None:
    """The iteration count must be a whole number from 0 to the run's total (when the state has one)."""
    iteration, total = state["iteration"], state.get("total", 0)
    if not _whole(total) or total < 0:
        raise CheckpointError(f"training state {path}: damaged state (total {total!r} is not an iteration count)",
                              hint=RESUME_HINT)
    if not _whole(iteration) or iteration < 0 or (total > 0 and iteration > total):
        bound = f" of a run of {total} iterations" if _whole(total) and total > 0 else ""
        raise CheckpointError(f"training state {path}: damaged state (iteration {iteration!r}{bound})",
                              hint=RESUME_HINT)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def restore_state(path: Path, record: CheckpointRecord, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load weights and optimizer from `path` into the run that `record` describes; returns the state."""
    state = read_state(path)
    saved = CheckpointRecord.from_dict(state["segcli_record"])
    if saved.model != record.model or saved.categories != record.categories or saved.kwargs != record.kwargs:
        raise CheckpointError(f"training state {path}: it trains {saved.model} {saved.kwargs} on "
                              f"{len(saved.categories)} classes, not {record.model} {record.kwargs} on "
                              f"{len(record.categories)}", hint=RESUME_HINT)
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    saved_optimizer, optimizer_name = config.get("optimizer"), type(optimizer).__name__.lower()
    if isinstance(saved_optimizer, str) and saved_optimizer != optimizer_name:
        raise CheckpointError(f"training state {path}: that run trains with {saved_optimizer}, not {optimizer_name}",
                              hint=f"resume with --optimizer {saved_optimizer}")
    try:
        model.load_state_dict(state["model_state"])
    except (RuntimeError, TypeError, AttributeError) as exc:  # missing keys, other shapes, not a dict
        raise CheckpointError(f"training state {path}: its weights do not fit {record.model} "
                              f"({str(exc).strip().splitlines()[-1].strip()})", hint=RESUME_HINT) from None
    try:
        optimizer.load_state_dict(state["optimizer_state"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"training state {path}: its optimizer state does not fit this run "
                              f"({type(exc).__name__}: {exc})", hint=RESUME_HINT) from None
    return state
