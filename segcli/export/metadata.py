"""What an exported graph says about itself, and the record segcli rebuilds from it.

ONNX files carry these as `metadata_props`, TorchScript files as `segcli.json` in `_extra_files`.
Values are strings; lists and dicts are JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segcli.checkpoints.archive import TORCHSCRIPT_METADATA_FILE  # noqa: F401 (the writer's name; archive reads it)
from segcli.checkpoints.record import CheckpointRecord, Preprocessing, finite_numbers, parse_record
from segcli.errors import CheckpointError
from segcli.text import printable

# the graph normalises itself: the engine hands it 0..255 RGB unchanged
IDENTITY_PREPROCESSING = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_scale=255.0,
                                       channel_order="RGB", resize_shorter=None)
REQUIRED_KEYS = ("model", "checkpoint", "categories", "palette")


def graph_metadata(record: CheckpointRecord, input_shape: list[int | str], exporter: str) -> dict[str, str]:
    """Metadata for a graph exported from `record`'s checkpoint."""
    from segcli import __version__
    from segcli.palettes import display_palette, palette_colors

    palette = display_palette(record.palette, record.dataset)  # the colours predictions are drawn in
    colours = [list(colour) for colour in palette_colors(palette, record.num_classes)[:record.num_classes]]
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


def graph_input_scales(metadata: dict[str, str], path: Path) -> tuple[float, ...]:
    """The test-time scales fused inside the graph (shown by predict), checked as a record's `input_scales`."""
    from segcli.models import check_input_scales

    scales = _json_field(metadata, "input_scales", printable(path.name)) if "input_scales" in metadata else [1.0]
    try:
        return check_input_scales(finite_numbers(scales, "input_scales", None))
    except ValueError as exc:
        raise CheckpointError(f"{printable(path.name)}: the input_scales metadata: {exc}") from None


def record_from_metadata(metadata: dict[str, str], path: Path) -> CheckpointRecord:
    """The record an exported graph runs under: its classes and colours, identity preprocessing.

    The metadata is checked as a record read from a file is (`CheckpointRecord.from_dict`: class
    names, palette entries, text fields), and its model must be one of segcli's zoo."""
    from segcli.models import MODEL_NAMES

    shown = printable(path.name)
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(f"{shown} is not a graph exported by segcli (no {', '.join(missing)} metadata); "
                              f"export one with `segcli export --model M --out {shown}`")
    graph_input_scales(metadata, path)
    data = {
        "name": metadata["checkpoint"], "model": metadata["model"], "dataset": metadata.get("dataset", "unknown"),
        "categories": _json_field(metadata, "categories", shown), "palette": _json_field(metadata, "palette", shown),
        "filename": path.name if path.name.isprintable() and "\\" not in path.name else "exported.onnx",
        "preprocessing": IDENTITY_PREPROCESSING.to_dict(),
        "notes": f"graph exported by segcli {printable(metadata.get('segcli_version', '?'))[:40]} from "
                 f"{printable(metadata['checkpoint'])[:200]}, run by onnxruntime (the checkpoint's preprocessing "
                 f"is inside the graph)",
    }
    record = parse_record(data, f"{shown}: its segcli metadata")
    if record.model not in MODEL_NAMES:
        raise CheckpointError(f"{shown}: its segcli metadata names model '{printable(record.model)[:80]}', which is "
                              f"not in segcli's zoo (see `segcli models`)")
    return record
