"""Prove an exported graph gives segcli's labels: run it and segcli's own fp32 forward on the same images.

The reference is exactly what `segcli predict --precision fp32` computes before the CRF
(`engine.preprocess`, the model in fp32, logits upsampled to the image size). Inputs are
procedural scenes (`segcli.data.synth`). A dynamic graph is checked at two sizes and two batch
sizes: tracing can freeze `interpolate` sizes or the batch into constants, which only a second
shape shows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from segcli.checkpoints.record import CheckpointRecord
from segcli.errors import SegcliError

MIN_LABEL_AGREEMENT = 0.995  # the fraction of pixels whose label must equal segcli's
# Logits may differ by float rounding (kernels, fused ops), scaled by the logits' size; a graph that
# resizes its input also rounds the resized pixels in float where torch rounds in uint8 (a level or
# two on a few pixels), hence the looser bound there.
LOGIT_TOLERANCE = {"plain": 1e-3, "resized": 5e-2}
SCENE_SEED = 16
GraphRunner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # uint8 NHWC -> (labels, logits)


@dataclass
class ShapeCheck:
    """One run of the graph against the reference."""

    batch: int
    height: int
    width: int
    max_logit_diff: float | None = None   # max |graph - reference| over all logits
    logit_tolerance: float | None = None  # the bound max_logit_diff had to stay within
    label_agreement: float | None = None  # fraction of pixels with the reference's label
    problem: str | None = None            # why the check failed, when it did

    @property
    def passed(self) -> bool:
        return self.problem is None


@dataclass
class VerificationReport:
    format: str                     # "onnx" or "torchscript"
    runtime: str                    # what ran the graph
    reference: str                  # what it was compared with
    checker: str | None = None      # onnx.checker's verdict
    checks: list[ShapeCheck] = field(default_factory=list)
    min_label_agreement: float = MIN_LABEL_AGREEMENT

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
        return data

    def lines(self) -> list[str]:
        """One line per check, for the terminal."""
        lines = [f"{self.runtime} against {self.reference}"] + ([self.checker] if self.checker else [])
        for check in self.checks:
            shape = f"batch {check.batch} at {check.height}x{check.width}"
            if check.label_agreement is None:
                lines.append(f"  {shape}: FAILED, {check.problem}")
                continue
            verdict = "ok" if check.passed else f"FAILED, {check.problem}"
            lines.append(f"  {shape}: labels agree on {check.label_agreement:.4%} of pixels, max logit difference "
                         f"{check.max_logit_diff:.2e} (bound {check.logit_tolerance:.1e}): {verdict}")
        return lines


def check_shapes(size: tuple[int, int], dynamic: bool) -> list[tuple[int, int, int]]:
    """(batch, height, width) to check: the export size, and with `dynamic` a second size at batch 2."""
    height, width = size
    if not dynamic:
        return [(1, height, width), (1, height, width)]  # two scenes at the one size the graph takes
    return [(1, height, width), (2, max(32, height * 3 // 4 + 1), max(32, width * 5 // 8 + 3))]


def scenes(batch: int, height: int, width: int, first_index: int) -> np.ndarray:
    """`batch` procedural scenes as uint8 [N, H, W, 3]."""
    from segcli.data.synth import make_scene

    return np.stack([make_scene(SCENE_SEED, first_index + index, (height, width)).image for index in range(batch)])


def reference_logits(model: nn.Module, record: CheckpointRecord, images: np.ndarray) -> torch.Tensor:
    """segcli's fp32 logits at the images' size, as `predict --precision fp32` computes them."""
    from segcli.engine import SegmentationEngine, preprocess, upsample_logits
    from segcli.loaded_model import LoadedModel
    from segcli.inference_options import InferenceOptions

    engine = SegmentationEngine.from_checkpoint(LoadedModel(model, record), device="cpu",
                                                options=InferenceOptions(precision="fp32", channels_last=False))
    batch = torch.cat([preprocess(image, record.preprocessing) for image in images])
    return upsample_logits(engine.forward(batch), tuple(images.shape[1:3]))


def compare(check: ShapeCheck, labels: np.ndarray, logits: np.ndarray, reference: torch.Tensor,
            tolerance: float) -> ShapeCheck:
    """Fill `check` from the graph's outputs and the reference logits."""
    expected = reference.numpy()
    if logits.shape != expected.shape or labels.shape != expected.shape[:1] + expected.shape[2:]:
        check.problem = (f"output shapes {tuple(labels.shape)} / {tuple(logits.shape)}, expected "
                         f"{expected.shape[:1] + expected.shape[2:]} / {expected.shape} (sizes frozen at export?)")
        return check
    check.max_logit_diff = float(np.abs(logits.astype(np.float64) - expected).max())
    check.logit_tolerance = tolerance * max(1.0, float(np.abs(expected).max()))
    check.label_agreement = float((labels == expected.argmax(1)).mean())
    if not np.isfinite(check.max_logit_diff):
        check.problem = "non-finite logits"
    elif check.label_agreement < MIN_LABEL_AGREEMENT:
        check.problem = f"labels agree on less than {MIN_LABEL_AGREEMENT:.1%} of pixels"
    elif check.max_logit_diff > check.logit_tolerance:
        check.problem = "logits differ by more than the bound"
    return check


def run_checks(run_graph: GraphRunner, model: nn.Module, record: CheckpointRecord,
               shapes: Sequence[tuple[int, int, int]], report: VerificationReport) -> VerificationReport:
    """Run the graph and the reference at each (batch, height, width); append the checks to `report`."""
    tolerance = LOGIT_TOLERANCE["resized" if record.preprocessing.resize_shorter else "plain"]
    for index, (batch, height, width) in enumerate(shapes):
        images = scenes(batch, height, width, first_index=2 * index)
        check = ShapeCheck(batch, height, width)
        try:
            labels, logits = run_graph(images)
        except Exception as exc:  # a runtime refusing a shape is a failed check, reported, not a traceback
            check.problem = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}"
            report.checks.append(check)
            continue
        report.checks.append(compare(check, np.asarray(labels), np.asarray(logits),
                                     reference_logits(model, record, images), tolerance))
    return report


def onnx_runner(path: str) -> tuple[GraphRunner, str]:
    """onnxruntime (CPU provider) over the file, and a description of it."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types: the exported graph does not load
        raise SegcliError(f"onnxruntime cannot load the exported graph: {str(exc).strip().splitlines()[0][:300]}") \
            from None
    return (lambda images: tuple(session.run(["labels", "logits"], {"image": images}))), \
        f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"


def torchscript_runner(module: torch.jit.ScriptModule) -> tuple[GraphRunner, str]:
    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            labels, logits = module(torch.from_numpy(images))
        return labels.numpy(), logits.numpy()

    return run, f"TorchScript (torch {torch.__version__})"


def reference_name() -> str:
    return f"segcli's fp32 forward (torch {torch.__version__}, CPU)"
