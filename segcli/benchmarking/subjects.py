"""What a benchmark runs: zoo models with their checkpoint, or random weights when asked by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

from torch import nn

from segcli.checkpoints.record import IMAGENET_PREPROCESSING, CheckpointRecord
from segcli.errors import CheckpointError, SegcliError
from segcli.palettes import VOC_CLASSES

if TYPE_CHECKING:
    from segcli.checkpoints.record import ResolvedCheckpoint

RANDOM_WEIGHTS = "random"


@dataclass
class BenchmarkSubject:
    """One model to measure, with the record that says how to feed it."""

    name: str               # zoo model name
    model: nn.Module
    record: CheckpointRecord
    weights: str            # checkpoint name, or "random"
    source: str = ""        # the checkpoint file, "" for random weights


@dataclass(frozen=True)
class PlannedSubject:
    """A model chosen for the run; weights are read only when its turn comes (one model in memory)."""

    name: str
    resolved: "ResolvedCheckpoint | None"  # None: random weights

    @property
    def weights(self) -> str:
        return RANDOM_WEIGHTS if self.resolved is None else self.resolved.record.name

    def load(self) -> BenchmarkSubject:
        if self.resolved is None:
            return random_subject(self.name)
        from segcli.checkpoints.loading import load_checkpoint_model

        model = load_checkpoint_model(self.resolved)
        record = self.resolved.record
        return BenchmarkSubject(self.name, model, record, record.name, str(self.resolved.path))


def random_record(model_name: str) -> CheckpointRecord:
    """A stand-in record for random weights: VOC's 21 classes, ImageNet normalisation, no resize."""
    return CheckpointRecord(
        name=RANDOM_WEIGHTS, model=model_name, dataset="none", categories=VOC_CLASSES, filename="",
        preprocessing=IMAGENET_PREPROCESSING, notes="random weights (benchmark only)",
    )


def random_subject(model_name: str) -> BenchmarkSubject:
    """A zoo model with random weights, seeded so repeated runs build the same network."""
    import torch

    from segcli.models import build_model, canonical_name

    name = canonical_name(model_name)
    torch.manual_seed(0)
    model = build_model(name, num_classes=len(VOC_CLASSES))
    return BenchmarkSubject(name, model, random_record(name), RANDOM_WEIGHTS)


def _resolve_on_disk(model_name: str) -> "ResolvedCheckpoint | None":
    """The checkpoint `predict` would use for this model, if it is on disk; never downloads."""
    from segcli.checkpoints.resolve import resolve_checkpoint

    try:
        return resolve_checkpoint(model_name, None, allow_download=False)
    except CheckpointError:
        return None


def plan_subjects(model_names: Sequence[str] | None) -> list[PlannedSubject]:
    """No names: every zoo model whose weights are on disk. Names: those models, random weights
    for any without a checkpoint (marked `weights: random`)."""
    from segcli.models import MODEL_NAMES, canonical_name

    if model_names:
        names = list(dict.fromkeys(canonical_name(name) for name in model_names))
        return [PlannedSubject(name, _resolve_on_disk(name)) for name in names]
    planned = [PlannedSubject(name, resolved) for name in MODEL_NAMES
               if (resolved := _resolve_on_disk(name)) is not None]
    if not planned:
        raise SegcliError(
            "no zoo model has a checkpoint on disk: fetch one (`segcli weights pull NAME`) or name the models "
            "to benchmark random weights", hint="pass --models NAME[,NAME...] to benchmark random weights"
        )
    return planned


def iter_subjects(planned: Sequence[PlannedSubject]) -> Iterator[BenchmarkSubject]:
    """Load the planned models one at a time."""
    for plan in planned:
        yield plan.load()
