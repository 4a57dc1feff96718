"""Produce one label map per upsampling method for an image, with the time and memory it took.

`DecoderRunner`: the five shipped `UpsamplingNet`s (one per method, trained identically).
`ZooLogitsRunner`: one zoo model's low-resolution logits, upsampled by each training-free method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from segcli.checkpoints.record import CheckpointRecord
from segcli.engine import labels_dtype, preprocess
from segcli.models.base import SegmentationModel
from segcli.upsampling.methods import METHOD_NAMES, upsample_logits_with
from segcli.upsampling.network import UpsampleMeter, UpsamplingNet

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine


@dataclass
class MethodResult:
    labels: np.ndarray           # [H, W] class indices at the image size
    upsample_ms: float           # the upsampling step(s) alone
    end_to_end_ms: float         # preprocess + network + upsampling + argmax
    upsample_peak_bytes: int     # see UpsampleMeter.memory_kind


class DecoderRunner:
    """The trained decoders: each method has its own network (same architecture, data and schedule)."""

    mode = "trained-decoders"

    def __init__(self, nets: Mapping[str, UpsamplingNet], records: Mapping[str, CheckpointRecord],
                 device: torch.device) -> None:
        unknown = [m for m in nets if m not in METHOD_NAMES]
        if unknown:
            raise ValueError(f"unknown methods {unknown}")
        self.methods = tuple(nets)
        self.device = device
        self.nets = {method: net.eval().to(device) for method, net in nets.items()}
        self.records = dict(records)
        first = self.records[self.methods[0]]
        for method, record in self.records.items():
            if record.categories != first.categories:
                raise ValueError(f"decoder {method} predicts other classes than {self.methods[0]}")
        self.categories = first.categories
        self.palette = first.palette
        self.preprocessing = first.preprocessing
        self.precision = "fp32"

    @property
    def memory_kind(self) -> str:
        return UpsampleMeter(self.device).memory_kind

    def upsampling_parameters(self) -> dict[str, int]:
        return {method: net.upsampling_parameters() for method, net in self.nets.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "model": "segcli-upsampling-net (SegNet-style, 4 stages, trained on segcli-synth)",
            "checkpoints": {method: record.filename for method, record in self.records.items()},
            "total_params": {method: sum(p.numel() for p in net.parameters()) for method, net in self.nets.items()},
        }

    def run(self, image_rgb: np.ndarray) -> dict[str, MethodResult]:
        results: dict[str, MethodResult] = {}
        for method, net in self.nets.items():
            meter = UpsampleMeter(self.device)
            _synchronize(self.device)
            started = time.perf_counter()
            batch = preprocess(image_rgb, self.preprocessing).to(self.device)
            net.meter = meter
            try:
                with torch.inference_mode():
                    labels = net(batch).argmax(1)[0]
            finally:
                net.meter = None
            labels_np = labels.cpu().numpy().astype(labels_dtype(len(self.categories)))
            elapsed = time.perf_counter() - started
            results[method] = MethodResult(labels_np, meter.seconds * 1000.0, elapsed * 1000.0, meter.peak_bytes)
        return results


class ZooLogitsRunner:
    """One zoo model: its low-resolution logits, upsampled to the image size by each method."""

    mode = "zoo-logits"

    def __init__(self, engine: "SegmentationEngine", methods: tuple[str, ...]) -> None:
        if not hasattr(engine.model, "low_res_logits"):
            raise ValueError(f"{type(engine.model).__name__} has no low_res_logits(x)")
        self.engine = engine
        self.methods = methods
        self.device = engine.plan.device
        self.categories = engine.record.categories
        self.palette = engine.record.palette
        self.precision = engine.plan.precision
        # FCN-VGG16's logits are not aligned with the image: the model says by how much
        self.geometry = engine.model.logit_geometry() if isinstance(engine.model, SegmentationModel) else None

    @property
    def memory_kind(self) -> str:
        return UpsampleMeter(self.device).memory_kind

    def upsampling_parameters(self) -> dict[str, int]:
        return {method: 0 for method in self.methods}  # the bilinear kernel is fixed, not learned

    def describe(self) -> dict[str, Any]:
        return {"model": self.engine.record.model, "checkpoints": {"model": self.engine.record.name},
                "checkpoint_source": self.engine.source,
                "logit_geometry": None if self.geometry is None else
                {"factor": self.geometry[0], "crop_offset": self.geometry[1]}}

    def low_res_logits(self, image_rgb: np.ndarray) -> torch.Tensor:
        """The model's logits before its final upsampling, float32, for the engine's preprocessing."""
        plan = self.engine.plan
        batch = preprocess(image_rgb, self.engine.record.preprocessing).to(self.device)
        if plan.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), plan.autocast():
            logits = self.engine.model.low_res_logits(batch)
        return logits.float().contiguous()

    def run(self, image_rgb: np.ndarray) -> dict[str, MethodResult]:
        size = (image_rgb.shape[0], image_rgb.shape[1])
        _synchronize(self.device)
        started = time.perf_counter()
        logits = self.low_res_logits(image_rgb)
        _synchronize(self.device)
        shared_ms = (time.perf_counter() - started) * 1000.0
        results: dict[str, MethodResult] = {}
        for method in self.methods:
            meter = UpsampleMeter(self.device)
            started = time.perf_counter()
            with torch.inference_mode():
                upsampled = meter.measure(lambda: upsample_logits_with(method, logits, size, self.geometry), logits)
                labels = upsampled.argmax(1)[0].cpu().numpy().astype(labels_dtype(len(self.categories)))
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            results[method] = MethodResult(labels, meter.seconds * 1000.0, shared_ms + elapsed_ms, meter.peak_bytes)
        return results


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
