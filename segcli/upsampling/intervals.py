"""95% intervals for compare-upsampling's scores, and paired verdicts between methods.

The scores are pooled over images (one confusion matrix, one set of boundary counts), so an
interval comes from the percentile bootstrap: each draw re-weights the images (multinomial
counts, i.e. resampling with replacement) and the seeds (the same for the trained decoders of every
method), recomputes each seed's pooled score and averages it over the drawn seeds. A method's
point estimate is its score on all images averaged over all seeds.

Paired differences use the same draw for both methods (same images, same seed indices: seed k
of every method was trained on the same batches from the same initial weights), so what the
images or seeds share cancels; a difference is `significant` when its 95% interval excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

DRAWS = 2000
LEVEL = 0.95
METRICS = ("miou", "pixel_acc", "boundary_f")
PAIRED_METRICS = ("miou", "boundary_f")


@dataclass
class MethodScores:
    """Per seed and image: confusion matrices [S, N, C, C] and boundary counts [S, N, 4]
    (predicted matched, predicted total, ground-truth matched, ground-truth total)."""

    confusions: np.ndarray
    boundaries: np.ndarray

    @property
    def seeds(self) -> int:
        return int(self.confusions.shape[0])

    @property
    def images(self) -> int:
        return int(self.confusions.shape[1])

    def pooled(self, image_weights: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric per (draw, seed) for image weights [B, N]: arrays [B, S]."""
        confusion = np.einsum("bn,snij->bsij", image_weights, self.confusions.astype(np.float64))
        boundary = np.einsum("bn,snk->bsk", image_weights, self.boundaries.astype(np.float64))
        return {"miou": miou(confusion), "pixel_acc": pixel_accuracy(confusion), "boundary_f": boundary_f(boundary)}


def miou(confusion: np.ndarray) -> np.ndarray:
    """Mean IoU over the classes present in prediction or ground truth, for [..., C, C] matrices."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(-1) + confusion.sum(-2) - tp
    present = union > 0
    iou = np.where(present, tp / np.where(present, union, 1), 0.0)
    return iou.sum(-1) / np.maximum(present.sum(-1), 1)


def pixel_accuracy(confusion: np.ndarray) -> np.ndarray:
    total = confusion.sum((-2, -1))
    return np.diagonal(confusion, axis1=-2, axis2=-1).sum(-1) / np.maximum(total, 1)


def boundary_f(counts: np.ndarray) -> np.ndarray:
    """F-score of pooled boundary counts [..., 4], with `BoundaryCounts.f_score`'s conventions."""
    pred_matched, pred_total, gt_matched, gt_total = np.moveaxis(counts, -1, 0)
    precision = np.where(pred_total > 0, pred_matched / np.maximum(pred_total, 1), 1.0)
    recall = np.where(gt_total > 0, gt_matched / np.maximum(gt_total, 1), 1.0)
    f = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    one_sided = ((pred_total == 0) & (gt_total > 0)) | ((gt_total == 0) & (pred_total > 0))
    return np.where(one_sided, 0.0, f)


def bootstrap_weights(count: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """[draws, count] resampling counts (each row sums to `count`)."""
    return rng.multinomial(count, np.full(count, 1.0 / count), size=draws).astype(np.float64)


def _interval(values: np.ndarray) -> list[float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [round(float(low), 6), round(float(high), 6)]


def summarize(scores: dict[str, MethodScores], draws: int = DRAWS, seed: int = 0) -> dict[str, Any]:
    """{"methods": {method: {metric, metric_ci95, seeds, per_seed}}, "pairwise": [...], "bootstrap": {...}}."""
    if not scores:
        raise ValueError("no methods to summarize")
    images = {s.images for s in scores.values()}
    if len(images) != 1:
        raise ValueError(f"methods were scored on different numbers of images: {sorted(images)}")
    n_images = images.pop()
    rng = np.random.default_rng(seed)
    image_weights = bootstrap_weights(n_images, draws, rng)
    full = np.ones((1, n_images))
    seed_counts = {count: bootstrap_weights(count, draws, rng) for count in sorted({s.seeds for s in scores.values()})}
    drawn: dict[str, dict[str, np.ndarray]] = {}
    methods: dict[str, Any] = {}
    for name, method in scores.items():
        seed_weights = seed_counts[method.seeds]
        per_draw = method.pooled(image_weights)
        point = method.pooled(full)
        drawn[name] = {m: (per_draw[m] * seed_weights).sum(1) / seed_weights.sum(1) for m in METRICS}
        entry: dict[str, Any] = {"seeds": method.seeds}
        for metric in METRICS:
            entry[metric] = round(float(point[metric].mean()), 6)
            entry[f"{metric}_ci95"] = _interval(drawn[name][metric])
        entry["per_seed"] = {metric: [round(float(v), 6) for v in point[metric][0]] for metric in METRICS}
        methods[name] = entry
    pairwise = [_pair(a, b, methods, drawn) for a, b in combinations(scores, 2)]
    resampled = ["images"] + (["seeds"] if any(s.seeds > 1 for s in scores.values()) else [])
    return {"methods": methods, "pairwise": pairwise,
            "bootstrap": {"draws": draws, "level": LEVEL, "seed": seed, "resampled": resampled,
                          "interval": "percentile", "images": n_images}}


def _pair(a: str, b: str, methods: dict[str, Any], drawn: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"a": a, "b": b}
    for metric in PAIRED_METRICS:
        low, high = _interval(drawn[a][metric] - drawn[b][metric])
        entry[metric] = {"difference": round(methods[a][metric] - methods[b][metric], 6), "ci95": [low, high],
                         "significant": bool(low > 0 or high < 0)}
    entry["significant"] = any(entry[metric]["significant"] for metric in PAIRED_METRICS)
    return entry


def verdict(pair: dict[str, Any], metric: str) -> str:
    """One line in words: which method is ahead on `metric`, or that the data cannot tell."""
    result = pair[metric]
    label = {"miou": "mIoU", "boundary_f": "boundary F"}[metric]
    low, high = (100 * v for v in result["ci95"])
    if not result["significant"]:
        return f"{pair['a']} vs {pair['b']}: no real {label} difference ({100 * result['difference']:+.1f} points, " \
               f"95% CI {low:+.1f} to {high:+.1f})"
    ahead, behind = (pair["a"], pair["b"]) if result["difference"] > 0 else (pair["b"], pair["a"])
    if ahead != pair["a"]:  # the interval of ahead - behind
        low, high = -high, -low
    return f"{ahead} beats {behind} on {label} by {abs(100 * result['difference']):.1f} points " \
           f"(95% CI {low:+.1f} to {high:+.1f})"
