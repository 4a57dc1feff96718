"""What an exported graph says about itself, and the record segcli rebuilds from it.

ONNX files carry these as `metadata_props`, TorchScript files as `segcli.json` in `_extra_files`.
Values are strings; lists and dicts are JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segcli.checkpoints.archive import TORCHSCRIPT_METADATA_FILE  # noqa: F401 (the writer's name; archive reads it)
from segcli.checkpoints.record import CheckpointRecord, Preprocessing
from segcli.errors import CheckpointError

# the graph normalises itself: the engine hands it 0..255 RGB unchanged
IDENTITY_PREPROCESSING = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_scale=255.0,
                                       channel_order="RGB", resize_shorter=None)
REQUIRED_KEYS = ("model", "checkpoint", "categories", "palette")


def graph_metadata(record: CheckpointRecord, input_shape: list[int | str], exporter: str) -> dict[str, str]:
    """Metadata for a graph exported from `record`'s checkpoint."""
    from segcli import __version__
    from segcli.palettes import palette_colors

    colours = [list(colour) for colour in palette_colors(record.palette, record.num_classes)[:record.num_classes]]
    return {
        "model": record.model,
        "checkpoint": record.name,
        "categories": json.dumps(list(record.categories)),
        "palette": json.dumps(colours),
        "segcli_version": __version__,
        "dataset": record.dataset,
        "preprocessing": json.dumps(record.preprocessing.to_dict()),  # applied inside the graph
        "model_kwargs": json.dumps(record.kwargs),
        # test-time input scales max-fused inside the graph (DeepLab v2's MSC), where records have them
        "input_scales": json.dumps(list(getattr(record, "input_scales", (1.0,)))),
        "input": json.dumps({"name": "image", "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                             "shape": input_shape}),
        "outputs": json.dumps({"labels": "int64 [N, H, W] class indices at the input size",
                               "logits": "float32 [N, C, H, W] at the input size"}),
        "exporter": exporter,
    }


def _json_field(metadata: dict[str, str], key: str, source: str) -> Any:
    try:
        return json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{source} has no readable {key!r} metadata; export it again with `segcli export`") \
            from None


def record_from_metadata(metadata: dict[str, str], path: Path) -> CheckpointRecord:
    """The record an exported graph runs under: its classes and colours, identity preprocessing."""
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(f"{path.name} is not a graph exported by segcli (no {', '.join(missing)} metadata); "
                              f"export one with `segcli export --model M --out {path.name}`")
    categories = _json_field(metadata, "categories", path.name)
    palette = _json_field(metadata, "palette", path.name)
    if not isinstance(categories, list) or not categories or not isinstance(palette, list):
        raise CheckpointError(f"{path.name}: malformed categories or palette metadata")
    return CheckpointRecord(
        name=metadata["checkpoint"], model=metadata["model"], dataset=metadata.get("dataset", "unknown"),
        categories=tuple(str(name) for name in categories), filename=path.name,
        palette=tuple(tuple(int(value) for value in colour) for colour in palette),
        preprocessing=IDENTITY_PREPROCESSING,
        notes=f"graph exported by segcli {metadata.get('segcli_version', '?')} from {metadata['checkpoint']}, "
              f"run by onnxruntime (the checkpoint's preprocessing is inside the graph)",
    )
