"""Produce label maps per upsampling method for an image, with the time and memory it took.

`DecoderRunner`: the shipped decoders (per method one per seed, trained identically) on the
frozen shared encoder, whose features are computed once per image for all of them.
`ZooLogitsRunner`: one zoo model's low-resolution logits, upsampled by each training-free method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segcli.checkpoints.record import CheckpointRecord
from segcli.engine import labels_dtype, preprocess
from segcli.models.base import SegmentationModel
from segcli.palettes import display_palette
from segcli.upsampling.methods import METHOD_NAMES, upsample_logits_with
from segcli.upsampling.encoder import ENCODER_STRIDE, SharedEncoder
from segcli.upsampling.network import UpsampleMeter, UpsamplingDecoder

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine


@dataclass
class MethodResult:
    labels: np.ndarray           # [H, W] class indices at the image size (the first seed's)
    upsample_ms: float           # the upsampling step(s) alone (mean over seeds)
    end_to_end_ms: float         # preprocess + network + upsampling + argmax (mean over seeds)
    upsample_peak_bytes: int     # see UpsampleMeter.memory_kind
    seed_labels: tuple[np.ndarray, ...] = ()  # every seed's labels, when the method has several models

    @property
    def replicas(self) -> tuple[np.ndarray, ...]:
        return self.seed_labels or (self.labels,)


class DecoderRunner:
    """The trained decoders on one frozen shared encoder: per method, one decoder per seed."""

    mode = "trained-decoders"

    def __init__(self, encoder: SharedEncoder, decoders: Mapping[str, Sequence[UpsamplingDecoder]],
                 records: Mapping[str, Sequence[CheckpointRecord]], device: torch.device) -> None:
        unknown = [m for m in decoders if m not in METHOD_NAMES]
        if unknown:
            raise ValueError(f"unknown methods {unknown}")
        self.methods = tuple(decoders)
        self.device = device
        self.encoder = encoder.eval().to(device)
        self.decoders = {method: [net.eval().to(device) for net in nets] for method, nets in decoders.items()}
        self.records = {method: list(recs) for method, recs in records.items()}
        first = self.records[self.methods[0]][0]
        for method, recs in self.records.items():
            if any(record.categories != first.categories for record in recs):
                raise ValueError(f"decoder {method} predicts other classes than {self.methods[0]}")
        widths = tuple(encoder.widths.values())
        for method, nets in self.decoders.items():
            if any(net.widths != widths for net in nets):
                raise ValueError(f"decoder {method} was built for other encoder widths than {widths}")
        self.categories = first.categories
        self.palette = display_palette(first.palette, first.dataset)  # as predictions are drawn
        self.preprocessing = first.preprocessing
        self.precision = "fp32"

    @property
    def memory_kind(self) -> str:
        return UpsampleMeter(self.device).memory_kind

    def upsampling_parameters(self) -> dict[str, int]:
        return {method: nets[0].upsampling_parameters() for method, nets in self.decoders.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "model": "segcli-upsampling-decoder on the frozen deeplabv3p-mobilenet-synth encoder "
                     "(ASPP at stride 16, low-level features at stride 4)",
            "encoder": "deeplabv3p-mobilenet-synth (frozen; features computed once per image)",
            "checkpoints": {method: [record.filename for record in recs] for method, recs in self.records.items()},
            "seeds": {method: [record.kwargs.get("seed") for record in recs] for method, recs in self.records.items()},
            "total_params": {method: sum(p.numel() for p in nets[0].parameters())
                             for method, nets in self.decoders.items()},
        }

    def run(self, image_rgb: np.ndarray) -> dict[str, MethodResult]:
        height, width = image_rgb.shape[:2]
        _synchronize(self.device)
        started = time.perf_counter()
        batch = preprocess(image_rgb, self.preprocessing).to(self.device)
        pad_h, pad_w = (-height) % ENCODER_STRIDE, (-width) % ENCODER_STRIDE
        if pad_h or pad_w:
            batch = F.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
        with torch.inference_mode():
            inputs = self.encoder(batch).as_inputs()
        _synchronize(self.device)
        shared_ms = (time.perf_counter() - started) * 1000.0
        return {method: self._run_method(nets, inputs, (height, width), shared_ms)
                for method, nets in self.decoders.items()}

    def _run_method(self, nets: Sequence[UpsamplingDecoder], inputs: dict, size: tuple[int, int],
                    shared_ms: float) -> MethodResult:
        labels, upsample_ms, decode_ms, peak = [], [], [], 0
        for net in nets:
            meter = UpsampleMeter(self.device)
            started = time.perf_counter()
            net.meter = meter
            try:
                with torch.inference_mode():
                    logits = net(inputs)[..., :size[0], :size[1]]
                    labels.append(logits.argmax(1)[0].cpu().numpy().astype(labels_dtype(len(self.categories))))
            finally:
                net.meter = None
            decode_ms.append((time.perf_counter() - started) * 1000.0)
            upsample_ms.append(meter.seconds * 1000.0)
            peak = max(peak, meter.peak_bytes)
        return MethodResult(labels[0], float(np.mean(upsample_ms)), shared_ms + float(np.mean(decode_ms)), peak,
                            tuple(labels))


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
        self.palette = display_palette(engine.record.palette, engine.record.dataset)
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
