"""Segmentation metrics from one confusion matrix (rows = ground truth, columns = prediction).

Labels are 0..n-1; 255 (and anything outside 0..n-1 in the ground truth) is ignored.
A class absent from both prediction and ground truth has no IoU (NaN) and is left out of mIoU.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from segcli.palettes import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates pixel counts; `matrix[t, p]` = pixels of true class t predicted as p."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: Any, target: Any) -> None:
        """Add one prediction / ground-truth pair (numpy arrays or tensors of the same shape)."""
        pred = _as_numpy(pred).astype(np.int64, copy=False).ravel()
        target = _as_numpy(target).astype(np.int64, copy=False).ravel()
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.size} pixels but the ground truth has {target.size}")
        n = self.num_classes
        valid = (target >= 0) & (target < n) & (target != IGNORE_INDEX)
        if ((pred[valid] < 0) | (pred[valid] >= n)).any():
            raise ValueError(f"prediction holds labels outside 0..{n - 1}")
        counts = np.bincount(n * target[valid] + pred[valid], minlength=n * n)
        self.matrix += counts.reshape(n, n)

    # --- per class
    def per_class_iou(self) -> np.ndarray:
        """IoU per class; NaN where a class is absent from both prediction and ground truth."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def per_class_accuracy(self) -> np.ndarray:
        """Recall per class; NaN where a class is absent from the ground truth."""
        tp = np.diag(self.matrix).astype(np.float64)
        support = self.matrix.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(support > 0, tp / support, np.nan)

    # --- summaries
    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def mean_class_accuracy(self) -> float:
        acc = self.per_class_accuracy()
        return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")

    def miou(self) -> float:
        """Mean IoU over the classes present in the prediction or the ground truth."""
        iou = self.per_class_iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def fw_iou(self) -> float:
        """Frequency-weighted IoU: IoU weighted by each class's share of ground-truth pixels."""
        support = self.matrix.sum(1).astype(np.float64)
        if support.sum() == 0:
            return float("nan")
        iou = np.nan_to_num(self.per_class_iou())
        return float((support / support.sum() * iou).sum())

    def excluded_classes(self) -> list[str]:
        """Classes absent from both prediction and ground truth (no IoU, not in mIoU)."""
        return [name for name, value in zip(self.class_names, self.per_class_iou()) if np.isnan(value)]

    def to_dict(self) -> dict[str, Any]:
        iou = self.per_class_iou()
        return {
            "miou": _json_float(self.miou()),
            "pixel_acc": _json_float(self.pixel_accuracy()),
            "mean_class_acc": _json_float(self.mean_class_accuracy()),
            "fw_iou": _json_float(self.fw_iou()),
            "per_class": {name: _json_float(v) for name, v in zip(self.class_names, iou)},
            "excluded_classes": self.excluded_classes(),
            "pixels": int(self.matrix.sum()),
        }


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return np.asarray(array)
