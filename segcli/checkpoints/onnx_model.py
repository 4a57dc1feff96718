"""An exported ONNX graph as a checkpoint format: `--weights FILE.onnx` (checkpoints/formats.py).

`OnnxRuntimeModel` is an `nn.Module` whose forward runs the onnxruntime session, so tiling, TTA,
the CRF and every output work unchanged. Its record is rebuilt from the metadata `segcli export`
writes (export/metadata.py) and has identity preprocessing: the engine hands it 0..255 RGB, which
it turns back into the graph's uint8 NHWC input; the graph normalises itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segcli.checkpoints.record import CheckpointRecord, Preprocessing, finite_numbers, parse_record
from segcli.errors import CheckpointError, MissingDependencyError, ModelOutputError, SegcliError
from segcli.text import printable

RUN_HINT = ('running an ONNX graph needs onnx and onnxruntime: pip install "segcli[export]" '
            '(or pip install onnx onnxruntime)')
# the graph normalises itself: the engine hands it 0..255 RGB unchanged
IDENTITY_PREPROCESSING = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_scale=255.0,
                                       channel_order="RGB", resize_shorter=None)
REQUIRED_KEYS = ("model", "checkpoint", "categories", "palette")


def onnx_graph_record(model: str | None, weights: str | os.PathLike[str]) -> CheckpointRecord:
    """The record of an exported graph (classes, colours, model); `model`, when given, must match it."""
    from segcli.models import canonical_name

    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ONNX file {weights} does not exist")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise MissingDependencyError(RUN_HINT) from None
    record = record_from_metadata(read_onnx_metadata(path), path)
    if model is not None and canonical_name(model) != record.model:
        raise CheckpointError(f"{printable(path.name)} is a {record.model} graph, not {canonical_name(model)}",
                              hint=f"pass --model {record.model}")
    return record


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata_props (the graph's weights are not read)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError types; any of them means "not ONNX"
        raise SegcliError(f"cannot read {path}: not an ONNX file, or truncated ({type(exc).__name__})") from None
    return {prop.key: prop.value for prop in model.metadata_props}


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

class OnnxRuntimeModel(nn.Module):
    """logits = the graph's `logits` output, for a [N, 3, H, W] float batch of 0..255 RGB values.

    `num_classes` (the metadata's category count), when given, must be the graph's class count.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 num_classes: int | None = None) -> None:
        super().__init__()
        import onnxruntime

        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types: the file is not a runnable graph
            raise CheckpointError(f"onnxruntime cannot load {printable(self.path.name)}: "
                                  f"{printable(_first_line(exc))}") from None
        self.num_classes = num_classes
        self.input_scales = graph_input_scales(read_onnx_metadata(self.path), self.path)  # fused in the graph
        shape = self._checked_shapes()  # ints where the graph is static, names where dynamic
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.fixed_size = tuple(shape[1:3]) if all(isinstance(side, int) for side in shape[1:3]) else None

    def _checked_shapes(self) -> list:
        """The `image` input's shape, once the graph's input and `logits` output are what segcli runs."""
        name = printable(self.path.name)
        inputs = {node.name: node.shape for node in self.session.get_inputs()}
        outputs = {node.name: node.shape for node in self.session.get_outputs()}
        if "image" not in inputs or "logits" not in outputs:
            raise CheckpointError(f"{name} has no 'image' input or no 'logits' output; export it again with "
                                  f"`segcli export`")
        image, logits = inputs["image"], outputs["logits"]
        if image is None or len(image) != 4 or logits is None or len(logits) != 4:
            raise CheckpointError(f"{name}: its image input has rank {len(image or ())} and its logits rank "
                                  f"{len(logits or ())}; segcli runs [N, H, W, 3] -> [N, C, H, W] graphs")
        if isinstance(logits[1], int) and self.num_classes is not None and logits[1] != self.num_classes:
            raise CheckpointError(f"{name}: the graph predicts {logits[1]} classes but its metadata names "
                                  f"{self.num_classes} categories")
        return image

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        height, width = batch.shape[-2:]
        if self.fixed_size is not None and (height, width) != self.fixed_size:
            raise SegcliError(f"{self.path.name} takes {self.fixed_size[0]}x{self.fixed_size[1]} images only, this "
                              f"one is {height}x{width}",
                              hint=f"export with --dynamic (or --size {height}x{width})")
        pixels = batch.detach().float().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        pixels = np.ascontiguousarray(pixels)
        step = self.fixed_batch or len(pixels)  # a static graph takes its own batch size only
        outputs = [self._run(pixels[start:start + step]) for start in range(0, len(pixels), step)]
        return torch.from_numpy(np.concatenate(outputs)).to(batch.device)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        """One session run; a runtime failure is this image's (one `failed:` line), a wrong shape the graph's."""
        try:
            logits = self.session.run(["logits"], {"image": pixels})[0]
        except Exception as exc:  # onnxruntime's error types (Fail, InvalidArgument, ...): not importable by name
            raise SegcliError(f"onnxruntime failed on this image with {printable(self.path.name)}: "
                              f"{printable(_first_line(exc))}") from None
        wanted = self.num_classes or (logits.shape[1] if logits.ndim == 4 else -1)
        if logits.ndim != 4 or logits.shape[:2] != (len(pixels), wanted):
            raise ModelOutputError(f"{printable(self.path.name)} returned logits of shape {list(logits.shape)} for "
                                   f"{len(pixels)} image(s); expected [N, {wanted}, H, W]")
        return logits

    def low_res_logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.forward(batch)  # the graph ends at the input size; nothing lower is exported


def record_from_metadata(metadata: dict[str, str], path: Path) -> CheckpointRecord:
    """The record an exported graph runs under: its classes and colours, identity preprocessing.

    The metadata is checked as a record read from a file is (`CheckpointRecord.from_dict`: class
    names, palette entries, text fields), and its model must be one of segcli's zoo."""
    from segcli.models import MODEL_NAMES

    shown = printable(path.name)
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(f"{shown} is not a graph exported by segcli (no {', '.join(missing)} metadata)",
                              hint=f"export one with `segcli export --model M --out {shown}`")
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
