"""`LoadedModel`: a network in memory and its record, what `SegmentationEngine.from_checkpoint` builds an
engine from (a `ResolvedCheckpoint` is loaded into one first). Torch-free: the network is only held."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from segcli.checkpoints.record import CheckpointRecord, ResolvedCheckpoint

__all__ = ["LoadedModel"]


@dataclass(frozen=True)
class LoadedModel:
    """A network with the record that says how to feed it (training, export checks and benchmarks hold one).

    `runs_on`: the (device, precision) the network's runtime fixes whatever the options say (an exported
    ONNX graph: onnxruntime's CPU provider, fp32); None: as the engine's options and device say.
    """

    network: "nn.Module"
    record: "CheckpointRecord"
    source: str = "in-memory model"                   # one line for the CLI (a file's `describe()`)
    runs_on: "tuple[str, str] | None" = None
    checkpoint: "ResolvedCheckpoint | None" = None    # the file it was loaded from, when it was

    @classmethod
    def from_resolved(cls, resolved: "ResolvedCheckpoint") -> "LoadedModel":
        """Build the record's model and load the resolved file into it (`segcli.checkpoints.loading`)."""
        from segcli.checkpoints.loading import load_checkpoint_model, runtime_execution

        return cls(load_checkpoint_model(resolved), resolved.record, resolved.describe(),
                   runs_on=runtime_execution(resolved), checkpoint=resolved)
