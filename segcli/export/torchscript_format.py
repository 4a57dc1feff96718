"""Write a `SegmentationGraph` as a traced TorchScript module, with segcli's metadata inside.

Tracing (not scripting): segcli's models are plain tensor code, and the trace records sizes as
tensor operations, so one trace serves every batch and image size (checked at two of each).
`segcli.json` holds the metadata as one JSON object (lists and objects as JSON, not as strings),
and the archive's folder is named after the final file, not the temporary one it is written to.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from segcli.checkpoints.archive import TORCHSCRIPT_METADATA_FILE


def trace_graph(graph: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """The traced module (run once on `example`)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation and tracer notes: the verification says what matters
        return torch.jit.trace(graph, (example,), check_trace=False)


# metadata values that are JSON text (see segcli.export.metadata.graph_metadata): stored as JSON values
JSON_VALUED = frozenset({"categories", "palette", "preprocessing", "model_kwargs", "input_scales", "input",
                         "outputs", "verification"})


def save_torchscript(module: torch.jit.ScriptModule, path: Path, metadata: dict[str, str],
                     archive_name: str | None = None) -> None:
    """Save with the metadata as `segcli.json` (read it with `torch.jit.load(path, _extra_files=...)`).
    The archive's top folder is `archive_name` (the final file's stem) rather than `path`'s name."""
    document = {key: _json_value(key, value) for key, value in metadata.items()}
    extra = {TORCHSCRIPT_METADATA_FILE: json.dumps(document, indent=1)}
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if archive_name is None:
            torch.jit.save(module, str(path), _extra_files=extra)
            return
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".segcli-export-") as folder:
            named = Path(folder) / f"{archive_name}.pt"  # torch names the archive's folder after the file
            torch.jit.save(module, str(named), _extra_files=extra)
            os.replace(named, path)


def _json_value(key: str, value: str) -> Any:
    if key in JSON_VALUED and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """A saved module and its metadata."""
    extra = {TORCHSCRIPT_METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    document = json.loads(extra[TORCHSCRIPT_METADATA_FILE] or "{}")
    # as ONNX's metadata_props: every value a string, lists and objects as JSON text
    return module, {key: value if isinstance(value, str) else json.dumps(value) for key, value in document.items()}
