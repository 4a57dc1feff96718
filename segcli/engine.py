"""The inference engine: one model load, then preprocess -> forward -> upsample -> (CRF) -> labels.

Every CLI command that runs a model goes through `SegmentationEngine`, so `predict`, `evaluate` and
`benchmark` see exactly the same preprocessing and, for `--precision auto` on CUDA, the same execution policy.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import resize as resize_image

from segcli.checkpoints.record import CheckpointRecord, Preprocessing
from segcli.checkpoints.resolve import synthetic_scenes_warning
from segcli.device import ExecutionPlan, labels_to_host, pinned_for, plan_execution
from segcli.errors import SegcliError, SyntheticScenesWarning
from segcli.execution_policy import BARE, EnginePolicy
from segcli.memory_retry import OutOfDeviceMemoryError, halving_sizes, run_with_oom_retry
from segcli.model_output import Prediction, require_finite_logits
from segcli.tiling import (MIN_TILE_SIZE, TilingPolicy, TTAParams, tiled_logit_bands, tiled_logits,
                           tta_probabilities)
from segcli.imageio import as_rgb
from segcli.inference_options import FROM_OPTIONS, CRFChoice, InferenceOptions, resolve_crf
from segcli.loaded_model import LoadedModel

if TYPE_CHECKING:
    from pathlib import Path

    from PIL import Image
    from segcli.checkpoints.record import ResolvedCheckpoint
    from segcli.crf import CRFParams, CRFSettings

__all__ = ["MIN_MODEL_SIDE", "SegmentationEngine", "labels_dtype", "preprocess",
           "upsample_logits"]

MIN_MODEL_SIDE = 32  # inputs the model cannot take are edge-padded to this (SegmentationEngine.forward)
_ResolvedCRF = "tuple[CRFParams, CRFSettings] | None"  # what the internals get: kernel settings and the method


def preprocess(image_rgb: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """An HxWx3 uint8 RGB array -> a normalised [1, 3, h, w] float32 tensor, as the checkpoint expects."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8 or not image_rgb.size:
        raise SegcliError(  # an empty one reached the model as torch's RuntimeError about tensor sizes
            f"expected an HxWx3 uint8 RGB image with pixels, got shape {image_rgb.shape} dtype {image_rgb.dtype}")
    if not image_rgb.flags.writeable:  # torch wants writable memory (decoders may hand out read-only arrays)
        image_rgb = image_rgb.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(image_rgb)).permute(2, 0, 1).unsqueeze(0)
    if preprocessing.resize_shorter and min(tensor.shape[-2:]) != preprocessing.resize_shorter:
        # resize the uint8 image, as torchvision's SemanticSegmentation preset does (antialiased bilinear)
        tensor = resize_image(tensor, [preprocessing.resize_shorter], antialias=True)
    tensor = tensor.float()
    if preprocessing.channel_order == "BGR":
        tensor = tensor.flip(1)
    if preprocessing.input_scale != 255.0:
        tensor = tensor / 255.0 * preprocessing.input_scale
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (tensor - mean) / std


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of [N, C, h, w] logits to `size`, in float32."""
    logits = logits.float()
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def labels_dtype(num_classes: int) -> np.dtype:
    return np.dtype(np.uint8) if num_classes <= 255 else np.dtype(np.int64)


class SegmentationEngine:
    """A loaded model, its checkpoint record, execution plan and `InferenceOptions`.

    Built by `from_checkpoint` (a resolved file or a `LoadedModel`) or `load` (resolve + from_checkpoint);
    the options are fixed once built: `tiling`, `tta` and `input_scales` read them.
    """

    def __init__(self, model: nn.Module, record: CheckpointRecord, plan: ExecutionPlan | None = None,
                 source: str = "in-memory model", options: InferenceOptions | None = None) -> None:
        """Internal: build engines with `from_checkpoint` (tests/test_engine_api.py checks no module calls this)."""
        self.record = record
        self.checkpoint: ResolvedCheckpoint | None = None  # the file, when built from one
        self.checkpoint_warning = synthetic_scenes_warning(record)  # goes into every per-image note
        self.on_memory_retry: Callable[[str], None] | None = None  # told (one line) when an OOM shrinks a batch or tile
        self.plan = plan or plan_execution("cpu", "fp32", channels_last=False)
        self.source = source
        self.options = options or InferenceOptions()
        self.policy: EnginePolicy | None = None  # --precision auto on CUDA: chooses the plan per batch shape
        self._ran = threading.local()  # the plan this thread's last forward pass ran in
        model = model.eval().to(self.plan.device)
        if self.plan.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @property
    def tiling(self) -> TilingPolicy:
        return self.options.tiling_policy()

    @property
    def tta(self) -> TTAParams | None:
        return self.options.tta

    @property
    def input_scales(self) -> tuple[float, ...]:
        """The scales whose logits are max-fused (the options', else the checkpoint's protocol)."""
        return tuple(getattr(self.model, "input_scales", None) or self.record.input_scales)

    @classmethod
    def from_checkpoint(cls, resolved: "ResolvedCheckpoint | LoadedModel", device: "str | torch.device" = "auto",
                        options: InferenceOptions | None = None) -> "SegmentationEngine":
        """THE way to build an engine: a `ResolvedCheckpoint` (loaded strictly) or a `LoadedModel` (in memory),
        on `device` as `options` say: precision, memory format, tiling, TTA, input scales, CRF. A model whose
        runtime fixes where it runs (`LoadedModel.runs_on`: an ONNX graph) runs there."""
        from segcli.models.base import set_input_scales

        options = options or InferenceOptions()
        loaded = resolved if isinstance(resolved, LoadedModel) else LoadedModel.from_resolved(resolved)
        device, precision = loaded.runs_on or (str(device), options.precision)
        if options.input_scales is not None:
            set_input_scales(loaded.network, options.input_scales)
        plan = plan_execution(device, precision, options.channels_last)
        policy = EnginePolicy.for_options(loaded.record, plan.device, options, loaded.runs_on)
        plan = plan if policy is None else BARE.plan(plan.device)  # the policy's reference until the first batch
        engine = cls(loaded.network, loaded.record, plan, source=loaded.source, options=options)
        engine.checkpoint, engine.policy = loaded.checkpoint, policy
        return engine

    @classmethod
    def load(cls, model: str, weights: str | None = None, device: str = "auto",
             options: InferenceOptions | None = None, allow_download: bool = False) -> "SegmentationEngine":
        """Resolve the checkpoint (`segcli.checkpoints.resolve`), then `from_checkpoint`; warns
        (`SyntheticScenesWarning`) when the weights were trained on synthetic scenes."""
        from segcli.checkpoints.resolve import resolve_checkpoint

        resolved = resolve_checkpoint(model, weights, allow_download=allow_download)
        engine = cls.from_checkpoint(resolved, device=device, options=options)
        if engine.checkpoint_warning:  # the CLI prints it as `Warning: ...` (segcli.cli.main)
            warnings.warn(engine.checkpoint_warning, SyntheticScenesWarning, stacklevel=2)
        return engine

    @property
    def num_classes(self) -> int:
        return self.record.num_classes

    def execution_text(self) -> str:
        """What runs: `fp32`, `bf16 CL`; `auto: measured on the first batch` before the policy chose."""
        if self.policy is not None and not self.policy.choices:
            return "auto: measured on the first batch"
        return self.plan.text

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Model logits (float32) for a preprocessed [N, 3, h, w] batch, on the plan's device. An input too small
        for the model (1-2 px; 3x5 scaled down by TTA) is edge-padded to MIN_MODEL_SIDE, the logits cropped back."""
        try:
            return self._model_logits(batch)
        except RuntimeError:
            height, width = batch.shape[-2:]
            if min(height, width) >= MIN_MODEL_SIDE:
                raise
        padding = (0, max(0, MIN_MODEL_SIDE - width), 0, max(0, MIN_MODEL_SIDE - height))
        padded = F.pad(batch, padding, mode="replicate")
        logits = self._model_logits(padded)
        return logits[..., :max(1, round(logits.shape[-2] * height / padded.shape[-2])),
                      :max(1, round(logits.shape[-1] * width / padded.shape[-1]))]

    def _model_logits(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.plan.device, non_blocking=True)
        chosen = self.policy.plan_for(self.model, batch) if self.policy is not None else None
        plan = self.plan = chosen or self.plan  # the policy's choice for this batch shape (trial or cache)
        self._ran.plan = plan
        if plan.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), plan.autocast():
            logits = self.model(batch)
        require_finite_logits(logits, self)  # NaN/inf weights gave "background 100%" (segcli.model_output)
        return logits.float()

    def predict(
        self,
        image: "np.ndarray | str | Path | Image.Image",
        crf: CRFChoice = FROM_OPTIONS,
        return_probabilities: bool = False,
    ) -> Prediction:
        """Segment one image: an HxWx3 uint8 RGB array, a PIL image, or a file path (read as predict
        reads files: EXIF orientation, pixel limit). `crf`: see `predict_batch`."""
        return self.predict_batch([as_rgb(image)], crf=crf, return_probabilities=return_probabilities)[0]

    def crf_for(self, crf: CRFChoice = FROM_OPTIONS) -> _ResolvedCRF:
        """The kernel settings and method a `crf=` argument means for this checkpoint (None: no CRF)."""
        return resolve_crf(crf, self.options, self.record)

    def predict_batch(
        self,
        images_rgb: Sequence[np.ndarray],
        crf: CRFChoice = FROM_OPTIONS,
        return_probabilities: bool = False,
    ) -> list[Prediction]:
        """Segment images; images of one size go through the model as one batch.

        `crf`: left out (`FROM_OPTIONS`), the CRF of the engine's options (`options.crf`; None: none); None, no
        CRF; `CRFSettings`, those (kernel settings not given: the checkpoint record's `crf_defaults`; exact
        settings: `CRFSettings.from_params(params, method)`).
        """
        crf = self.crf_for(crf)
        predictions: list[Prediction | None] = [None] * len(images_rgb)
        for indices in _group_by_size(images_rgb):
            group = [images_rgb[i] for i in indices]
            if self.tta is not None or self.tiling.applies_to(*self.input_size(*group[0].shape[:2])):
                results = [self._predict_one_with_tile_retry(image, crf, return_probabilities) for image in group]
            else:
                try:
                    results = run_with_oom_retry(
                        lambda size: [prediction for start in range(0, len(group), size)
                                      for prediction in self._predict_same_size(group[start:start + size], crf,
                                                                                return_probabilities)],
                        sizes=halving_sizes(len(group), 1), what="batch size", on_retry=self._batch_retry_note)
                except OutOfDeviceMemoryError:
                    if max(self.input_size(*group[0].shape[:2])) <= MIN_TILE_SIZE:
                        raise
                    # one whole image does not fit: sliding windows, smaller until they fit
                    results = [self._predict_one_with_tile_retry(image, crf, return_probabilities, whole_failed=True)
                               for image in group]
            for index, prediction in zip(indices, results):
                prediction.plan = getattr(self._ran, "plan", self.plan)
                predictions[index] = prediction
        return [p for p in predictions if p is not None]

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The model-input size of an image of this size (after `resize_shorter`, torchvision's rounding)."""
        shorter = self.record.preprocessing.resize_shorter
        if not shorter or min(height, width) == shorter:
            return height, width
        if height <= width:
            return shorter, int(shorter * width / height)
        return int(shorter * height / width), shorter

    def _predict_same_size(
        self, images_rgb: list[np.ndarray], crf: "_ResolvedCRF", return_probabilities: bool
    ) -> list[Prediction]:
        height, width = images_rgb[0].shape[:2]
        started = time.perf_counter()
        batch = pinned_for(torch.cat([preprocess(i, self.record.preprocessing) for i in images_rgb]), self.plan.device)
        preprocessed = time.perf_counter()
        logits = self.forward(batch)
        self.plan.synchronize()
        forwarded = time.perf_counter()
        logits = upsample_logits(logits, (height, width))
        need_probabilities = crf is not None or return_probabilities
        probabilities = torch.softmax(logits.cpu(), dim=1) if need_probabilities else None
        labels = None if need_probabilities else labels_to_host(logits, labels_dtype(self.num_classes))
        upsampled = time.perf_counter()
        share = 1000.0 / len(images_rgb)
        shared_timings = {
            "preprocess": (preprocessed - started) * share,
            "forward": (forwarded - preprocessed) * share,
            "upsample": (upsampled - forwarded) * share,
        }
        results = []
        for index, image in enumerate(images_rgb):
            timings = dict(shared_timings)
            if labels is not None:  # argmax of logits == of softmax, taken on the device; only the labels copied
                results.append(Prediction(labels=labels[index], timings_ms=timings))
            else:
                results.append(self._finish(image, probabilities[index].numpy(), crf, return_probabilities, timings))
        return results

    def _finish(
        self, image: np.ndarray, probs: np.ndarray, crf: "_ResolvedCRF", return_probabilities: bool,
        timings: dict[str, float],
    ) -> Prediction:
        """CRF (when asked) and argmax of [C, H, W] probabilities at the image size."""
        crf_run = None
        if crf is not None:
            from segcli.crf import refine

            crf_started = time.perf_counter()
            params, settings = crf
            probs, crf_run = refine(probs, image, params, method=settings.method,
                                    iterations_given=settings.iterations_given, device=self.plan.device)
            timings["crf"] = (time.perf_counter() - crf_started) * 1000.0
        labels = probs.argmax(axis=0).astype(labels_dtype(self.num_classes))
        return Prediction(
            labels=labels,
            probabilities=np.ascontiguousarray(probs, dtype=np.float32) if return_probabilities else None,
            timings_ms=timings, crf=None if crf_run is None else crf_run.to_dict(),
        )

    def _batch_retry_note(self, failed: int, retry: int, reason: str) -> None:
        if self.on_memory_retry is not None:
            self.on_memory_retry(f"out of memory at batch size {failed}; retrying at {retry}")

    def _predict_one_with_tile_retry(
        self, image: np.ndarray, crf: "_ResolvedCRF", return_probabilities: bool, whole_failed: bool = False
    ) -> Prediction:
        """Tiled (or TTA) inference; on out-of-memory, again with tiles half the size, one per forward pass.

        `whole_failed`: the untiled image already ran out of memory, so start with tiles smaller than it.
        """
        height, width = self.input_size(*image.shape[:2])
        policy = self.tiling
        if policy.applies_to(height, width):
            first = policy.tile_size
            sizes = halving_sizes(first, MIN_TILE_SIZE)
        else:  # tiles of half the image's longer side, after the untiled try (here, or the one that failed)
            first = max(MIN_TILE_SIZE, min(policy.tile_size, (max(height, width) + 1) // 2))
            sizes = halving_sizes(first, MIN_TILE_SIZE) if whole_failed else [0] + halving_sizes(first, MIN_TILE_SIZE)

        def attempt(size: int) -> Prediction:
            if size == 0:  # as the policy says (TTA without tiles)
                return self._predict_one_tiled_or_augmented(image, crf, return_probabilities, policy)
            # the policy's tiles per pass at its own tile size; one at a time once memory ran out
            tiles_per_pass = policy.max_tiles_per_batch if size == first and not whole_failed else 1
            forced = replace(policy, mode="size", tile_size=size, max_tiles_per_batch=tiles_per_pass)
            return self._predict_one_tiled_or_augmented(image, crf, return_probabilities, forced)

        def note(failed: int, retry: int, reason: str) -> None:
            if self.on_memory_retry is not None:
                what = f"at tile size {failed}" if failed else "on the whole image"
                self.on_memory_retry(f"out of memory {what}; retrying with {retry}x{retry} tiles, one at a time")

        if whole_failed:
            note(0, sizes[0], "")
        return run_with_oom_retry(attempt, sizes=sizes, what="tile size", on_retry=note)

    def _logits_at(self, batch: torch.Tensor, policy: TilingPolicy | None = None) -> torch.Tensor:
        """Logits at the input's size: tiled when the policy says so, else one forward pass."""
        policy = policy or self.tiling
        if policy.applies_to(*batch.shape[-2:]):
            return tiled_logits(self.forward, batch, self.num_classes, policy.tile_size, policy.overlap,
                                policy.max_tiles_per_batch)
        return self.forward(batch)

    def _predict_one_tiled_or_augmented(
        self, image: np.ndarray, crf: "_ResolvedCRF", return_probabilities: bool,
        policy: TilingPolicy | None = None,
    ) -> Prediction:
        """One image through sliding windows and/or TTA; memory stays at one band of logits when it can."""
        policy = policy or self.tiling
        height, width = image.shape[:2]
        started = time.perf_counter()
        batch = preprocess(image, self.record.preprocessing)
        preprocessed = time.perf_counter()
        timings = {"preprocess": (preprocessed - started) * 1000.0}
        same_size = tuple(batch.shape[-2:]) == (height, width)
        if self.tta is None and same_size and crf is None and policy.applies_to(height, width):
            return self._predict_streaming(image, batch, return_probabilities, timings, policy)
        if self.tta is not None:
            probabilities = tta_probabilities(lambda scaled: self._logits_at(scaled, policy), batch, self.tta)
            self.plan.synchronize()
            forwarded = time.perf_counter()
            # bilinear weights sum to one, so resized probabilities stay normalised
            probabilities = upsample_logits(probabilities, (height, width))
        else:
            logits = self._logits_at(batch, policy)
            self.plan.synchronize()
            forwarded = time.perf_counter()
            probabilities = torch.softmax(upsample_logits(logits, (height, width)), dim=1)
            del logits
        timings["forward"] = (forwarded - preprocessed) * 1000.0
        timings["upsample"] = (time.perf_counter() - forwarded) * 1000.0
        return self._finish(image, probabilities[0].numpy(), crf, return_probabilities, timings)

    def _predict_streaming(
        self, image: np.ndarray, batch: torch.Tensor, return_probabilities: bool, timings: dict[str, float],
        policy: TilingPolicy,
    ) -> Prediction:
        """Tiled inference whose finished row bands go straight to labels (and probabilities when asked)."""
        height, width = image.shape[:2]
        labels = np.empty((height, width), dtype=labels_dtype(self.num_classes))
        probabilities = np.empty((self.num_classes, height, width), np.float32) if return_probabilities else None
        started = time.perf_counter()
        for top, band in tiled_logit_bands(self.forward, batch, self.num_classes, policy.tile_size,
                                           policy.overlap, policy.max_tiles_per_batch):
            rows = slice(top, top + band.shape[1])
            labels[rows] = band.argmax(0).numpy()
            if probabilities is not None:
                probabilities[:, rows] = torch.softmax(band, dim=0).numpy()
        self.plan.synchronize()
        timings["forward"] = (time.perf_counter() - started) * 1000.0
        timings["upsample"] = 0.0
        return Prediction(labels=labels, probabilities=probabilities, timings_ms=timings)


def _group_by_size(images: Iterable[np.ndarray]) -> list[list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape[:2]), []).append(index)
    return list(groups.values())
