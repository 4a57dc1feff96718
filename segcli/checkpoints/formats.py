"""Checkpoint formats that are whole graphs, not state dicts: a file suffix -> how segcli reads its
record and builds its model. `resolve` and `loading` look a file up here before reading state dicts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from segcli.checkpoints.record import CheckpointRecord

if TYPE_CHECKING:
    from torch import nn


def _onnx_record(model: str | None, weights: str | os.PathLike[str]) -> CheckpointRecord:
    from segcli.checkpoints.onnx_model import onnx_graph_record

    return onnx_graph_record(model, weights)


def _onnx_model(path: Path, record: CheckpointRecord) -> "nn.Module":
    from segcli.checkpoints.onnx_model import OnnxRuntimeModel

    return OnnxRuntimeModel(path, num_classes=record.num_classes)


@dataclass(frozen=True)
class GraphFormat:
    """`record(model, path)`: the record the file carries (`model`, when given, must match it);
    `model(path, record)`: an nn.Module that runs the file; `runs_on`: the (device, precision) its
    runtime uses whatever was asked."""

    description: str
    record: Callable[[str | None, str | os.PathLike[str]], CheckpointRecord]
    model: Callable[[Path, CheckpointRecord], "nn.Module"]
    runs_on: tuple[str, str]


ONNX_RUNS_ON = ("cpu", "fp32")  # onnxruntime's CPU provider runs the fp32 graph whatever --precision says
GRAPH_FORMATS: dict[str, GraphFormat] = {
    ".onnx": GraphFormat("a graph from `segcli export`, run by onnxruntime", _onnx_record, _onnx_model,
                         ONNX_RUNS_ON),
}


def graph_format(path: str | os.PathLike[str]) -> GraphFormat | None:
    """The format of a graph file by its suffix (any case); None for state-dict checkpoints."""
    return GRAPH_FORMATS.get(Path(path).suffix.lower())
