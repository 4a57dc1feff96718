"""Write a `SegmentationGraph` as a traced TorchScript module, with segcli's metadata inside.

Tracing (not scripting): segcli's models are plain tensor code, and the trace records sizes as
tensor operations, so one trace serves every batch and image size (checked at two of each).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from segcli.export.metadata import TORCHSCRIPT_METADATA_FILE


def trace_graph(graph: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """The traced module (run once on `example`)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation and tracer notes: the verification says what matters
        return torch.jit.trace(graph, (example,), check_trace=False)


def save_torchscript(module: torch.jit.ScriptModule, path: Path, metadata: dict[str, str]) -> None:
    """Save with the metadata as `segcli.json` (read it with `torch.jit.load(path, _extra_files=...)`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(module, str(path), _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)})


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """A saved module and its metadata."""
    extra = {TORCHSCRIPT_METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[TORCHSCRIPT_METADATA_FILE] or "{}")
