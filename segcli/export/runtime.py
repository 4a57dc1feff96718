"""Run an exported ONNX graph inside segcli's engine: `--weights FILE.onnx`.

`OnnxRuntimeModel` is an `nn.Module` whose forward runs the onnxruntime session, so tiling, TTA,
the CRF and every output work unchanged. Its record has identity preprocessing: the engine hands it
0..255 RGB, which it turns back into the graph's uint8 NHWC input; the graph normalises itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segcli.checkpoints.record import CheckpointRecord
from segcli.errors import CheckpointError, SegcliError
from segcli.export.metadata import record_from_metadata
from segcli.export.onnx_format import RUN_HINT, read_onnx_metadata, require_onnx


def onnx_graph_record(model: str | None, weights: str | os.PathLike[str]) -> CheckpointRecord:
    """The record of an exported graph (classes, colours, model); `model`, when given, must match it."""
    from segcli.models import canonical_name

    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ONNX file {weights} does not exist")
    require_onnx(RUN_HINT)
    record = record_from_metadata(read_onnx_metadata(path), path)
    if model is not None and canonical_name(model) != record.model:
        raise CheckpointError(f"{path.name} is a {record.model} graph, not {canonical_name(model)}; "
                              f"pass --model {record.model}")
    return record


class OnnxRuntimeModel(nn.Module):
    """logits = the graph's `logits` output, for a [N, 3, H, W] float batch of 0..255 RGB values."""

    fixed_execution = ("cpu", "fp32")  # onnxruntime's CPU provider runs the fp32 graph whatever --precision says

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types: the file is not a runnable graph
            raise CheckpointError(f"onnxruntime cannot load {Path(path).name}: {str(exc).splitlines()[0][:300]}") \
                from None
        self.path = Path(path)
        scales = json.loads(read_onnx_metadata(self.path).get("input_scales", "[1.0]"))
        self.input_scales = tuple(float(scale) for scale in scales)  # fused inside the graph; shown by predict
        shape = self.session.get_inputs()[0].shape  # ints where the graph is static, names where dynamic
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.fixed_size = tuple(shape[1:3]) if all(isinstance(side, int) for side in shape[1:3]) else None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        height, width = batch.shape[-2:]
        if self.fixed_size is not None and (height, width) != self.fixed_size:
            raise SegcliError(f"{self.path.name} takes {self.fixed_size[0]}x{self.fixed_size[1]} images only, this "
                              f"one is {height}x{width}; export with --dynamic (or --size {height}x{width})")
        pixels = batch.detach().float().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        pixels = np.ascontiguousarray(pixels)
        step = self.fixed_batch or len(pixels)  # a static graph takes its own batch size only
        outputs = [self.session.run(["logits"], {"image": pixels[start:start + step]})[0]
                   for start in range(0, len(pixels), step)]
        return torch.from_numpy(np.concatenate(outputs)).to(batch.device)

    def low_res_logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.forward(batch)  # the graph ends at the input size; nothing lower is exported
