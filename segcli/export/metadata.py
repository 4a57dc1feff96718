"""What an exported graph says about itself (checkpoints/onnx_model.py rebuilds a record from it).

ONNX files carry these as `metadata_props`, TorchScript files as `segcli.json` in `_extra_files`.
Values are strings; lists and dicts are JSON.
"""

from __future__ import annotations

import json

from segcli.checkpoints.record import CheckpointRecord


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
