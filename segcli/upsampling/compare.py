"""Run every method on every image, score them, and collect the JSON summary.

Scores per method (over all images with ground truth): mIoU and pixel accuracy from one
confusion matrix, boundary precision / recall / F within `boundary_px`, each averaged over the
method's seeds (trained decoders) and with a 95% bootstrap interval, plus a paired verdict for
each pair of methods (`segcli.upsampling.intervals`); always: pairwise agreement, learned
parameters of the upsampling, mean time per image (upsampling alone and end to end, after one
untimed warm-up image) and the peak memory of the upsampling step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from segcli.errors import SegcliError, with_hint
from segcli.metrics import ConfusionMatrix
from segcli.upsampling.boundary import AgreementCounter, BoundaryCounts, boundary_counts
from segcli.upsampling.intervals import MethodScores, summarize
from segcli.upsampling.methods import METHODS
from segcli.upsampling.runners import MethodResult
from segcli.upsampling.samples import Sample, load_ground_truth

SUMMARY_VERSION = 2
TIMING_NOTE = "mean ms per image after one untimed warm-up image"
MEMORY_NOTES = {
    "cuda_max_allocated": "CUDA max allocated during the upsampling step, above what was allocated before it",
    "tensor_bytes": "bytes of the upsampling step's input, output (and pooling indices for unpool) tensors; "
                    "for the decoders, the largest of the four stages",
}
_DESCRIPTIONS = {method.name: method.description for method in METHODS}


class ComparisonRunner(Protocol):
    mode: str
    methods: tuple[str, ...]
    categories: tuple[str, ...]
    palette: Any
    precision: str
    device: Any

    @property
    def memory_kind(self) -> str: ...
    def upsampling_parameters(self) -> dict[str, int]: ...
    def describe(self) -> dict[str, Any]: ...
    def run(self, image_rgb: np.ndarray) -> dict[str, MethodResult]: ...


@dataclass
class MethodTotals:
    confusions: list[np.ndarray] = field(default_factory=list)  # per image with ground truth: [S, C, C]
    boundaries: list[np.ndarray] = field(default_factory=list)  # per image with ground truth: [S, 4]
    upsample_ms: list[float] = field(default_factory=list)
    end_to_end_ms: list[float] = field(default_factory=list)
    peak_bytes: int = 0


@dataclass
class ImageOutcome:
    """One image's results, handed to the grid writer."""

    sample: Sample
    rgb: np.ndarray
    ground_truth: np.ndarray | None
    labels: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]  # method -> miou / pixel_acc / boundary_f, mean over seeds (with ground truth)


def compare_upsampling(
    runner: ComparisonRunner,
    samples: list[Sample],
    boundary_px: int = 2,
    max_pixels: int | None = None,
    on_image: Callable[[ImageOutcome], dict[str, Any]] | None = None,
    on_failure: Callable[[Sample, str], None] | None = None,
    draws: int = 2000,
) -> dict[str, Any]:
    """Compare the runner's methods on `samples`; `on_image` may return extra per-image JSON (grid path)."""
    from segcli.imageio import DEFAULT_MAX_PIXELS, load_image

    methods = runner.methods
    n_classes = len(runner.categories)
    totals = {m: MethodTotals() for m in methods}
    agreement = AgreementCounter(methods)
    per_image: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    warmed_up = False
    with_gt = 0
    for sample in samples:
        try:
            loaded = load_image(sample.path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
            gt = load_ground_truth(sample, loaded.rgb.shape[:2], n_classes)
            if not warmed_up:
                runner.run(loaded.rgb)
                warmed_up = True
            results = runner.run(loaded.rgb)
        except SegcliError as exc:
            failed.append({"image": str(sample.path), "error": str(exc)})
            if on_failure is not None:
                on_failure(sample, with_hint(exc))  # the command line's line: with its flag hint
            continue
        labels = {m: results[m].labels for m in methods}
        agreement.update(labels)
        with_gt += gt is not None
        scores = {m: {} if gt is None else _score_image(totals[m], results[m].replicas, gt, n_classes, boundary_px)
                  for m in methods}
        for m in methods:
            totals[m].upsample_ms.append(results[m].upsample_ms)
            totals[m].end_to_end_ms.append(results[m].end_to_end_ms)
            totals[m].peak_bytes = max(totals[m].peak_bytes, results[m].upsample_peak_bytes)
        entry: dict[str, Any] = {
            "image": str(sample.path),
            "size": [int(loaded.rgb.shape[1]), int(loaded.rgb.shape[0])],
            "ground_truth": str(sample.mask_path) if gt is not None else None,
            "methods": {m: {**{k: _finite(v) for k, v in scores[m].items()},
                            "upsample_ms": round(results[m].upsample_ms, 4),
                            "end_to_end_ms": round(results[m].end_to_end_ms, 4)} for m in methods},
        }
        if on_image is not None:
            entry.update(on_image(ImageOutcome(sample, loaded.rgb, gt, labels, scores)))
        per_image.append(entry)
    if not per_image:
        raise SegcliError(f"none of the {len(samples)} images could be compared: {failed[0]['error'] if failed else 'no images'}")
    summary = _summary(runner, totals, agreement, per_image, failed, boundary_px, with_gt)
    if with_gt:
        _add_intervals(summary, totals, draws)
    return summary


def _score_image(total: MethodTotals, replicas: tuple[np.ndarray, ...], gt: np.ndarray, n_classes: int,
                 boundary_px: int) -> dict[str, float]:
    """Add one image's confusion and boundary counts (per seed) to `total`; its scores, mean over seeds."""
    confusions, boundaries, per_seed = [], [], []
    for labels in replicas:
        confusion = ConfusionMatrix(n_classes)
        confusion.update(labels, gt)
        counts = boundary_counts(labels, gt, boundary_px)
        confusions.append(confusion.matrix)
        boundaries.append([counts.pred_matched, counts.pred_total, counts.gt_matched, counts.gt_total])
        per_seed.append((confusion.miou(), confusion.pixel_accuracy(), counts.f_score))
    total.confusions.append(np.stack(confusions))
    total.boundaries.append(np.asarray(boundaries, dtype=np.int64))
    miou, pixel_acc, boundary_f = (float(np.mean(column)) for column in zip(*per_seed))
    return {"miou": miou, "pixel_acc": pixel_acc, "boundary_f": boundary_f}


def _add_intervals(summary: dict[str, Any], totals: dict[str, MethodTotals], draws: int) -> None:
    """Point estimates (mean over seeds), 95% intervals and the pairwise verdicts."""
    scores = {m: MethodScores(np.stack(t.confusions, axis=1), np.stack(t.boundaries, axis=1))
              for m, t in totals.items()}
    intervals = summarize(scores, draws=draws)
    for m, entry in intervals["methods"].items():
        summary["methods"][m].update(entry)
    summary["pairwise"] = intervals["pairwise"]
    summary["bootstrap"] = intervals["bootstrap"]


def _summary(runner: ComparisonRunner, totals: dict[str, MethodTotals], agreement: AgreementCounter,
             per_image: list[dict[str, Any]], failed: list[dict[str, str]], boundary_px: int,
             with_gt: int) -> dict[str, Any]:
    params = runner.upsampling_parameters()
    methods: dict[str, Any] = {}
    for m, total in totals.items():
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS[m],
            "upsample_params": int(params[m]),
            "upsample_ms": round(float(np.mean(total.upsample_ms)), 4),
            "end_to_end_ms": round(float(np.mean(total.end_to_end_ms)), 4),
            "upsample_peak_bytes": int(total.peak_bytes),
        }
        if with_gt:  # over all seeds together; miou, pixel_acc and boundary_f come from _add_intervals
            confusion = ConfusionMatrix(len(runner.categories), runner.categories)
            confusion.matrix = np.sum(total.confusions, axis=(0, 1))
            boundary = BoundaryCounts(*(int(v) for v in np.sum(total.boundaries, axis=(0, 1))))
            entry.update({"per_class_iou": confusion.to_dict()["per_class"],
                          "boundary_precision": boundary.precision, "boundary_recall": boundary.recall})
        methods[m] = entry
    return {
        "command": "compare-upsampling",
        "version": SUMMARY_VERSION,
        "mode": runner.mode,
        **runner.describe(),
        "device": str(runner.device),
        "precision": runner.precision,
        "categories": list(runner.categories),
        "images": len(per_image),
        "images_with_ground_truth": with_gt,
        "boundary_px": boundary_px,
        "timing": TIMING_NOTE,
        "memory_kind": runner.memory_kind,
        "memory_note": MEMORY_NOTES[runner.memory_kind],
        "methods": methods,
        "agreement": agreement.to_dict(),
        "per_image": per_image,
        "failed": failed,
    }


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def ranked_methods(summary: dict[str, Any]) -> list[str]:
    """Methods by mIoU (best first) when there is ground truth, else in the order run."""
    methods = summary["methods"]
    if summary["images_with_ground_truth"]:
        return sorted(methods, key=lambda m: -(methods[m]["miou"] or 0.0))
    return list(methods)
