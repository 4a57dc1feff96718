"""Boundary F-score (how well edges are placed) and pairwise agreement between label maps.

A boundary pixel is a pixel with a 4-neighbour of another label (so an edge marks the pixels on
both sides of it). A predicted boundary pixel is matched when a ground-truth boundary pixel lies
within `radius` pixels in Chebyshev distance (a (2r+1) x (2r+1) square, dilation by max-pooling),
and vice versa. Ground-truth label 255 (ignore) counts as a label of its own: VOC draws its 255
band along object outlines, so its edges are where the boundaries are.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """[H, W] bool: True where a 4-neighbour has a different label."""
    labels = np.asarray(labels)
    edges = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edges[1:, :] |= vertical
    edges[:-1, :] |= vertical
    edges[:, 1:] |= horizontal
    edges[:, :-1] |= horizontal
    return edges


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """[H, W] bool dilated by a (2 radius + 1)-wide square."""
    if radius <= 0:
        return np.asarray(mask, dtype=bool)
    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    grown = F.max_pool2d(tensor, 2 * radius + 1, stride=1, padding=radius)
    return grown[0, 0].numpy() > 0


@dataclass
class BoundaryCounts:
    """Boundary pixel counts, summed over images; the scores come from the sums."""

    pred_matched: int = 0  # predicted boundary pixels within `radius` of a ground-truth boundary
    pred_total: int = 0
    gt_matched: int = 0    # ground-truth boundary pixels within `radius` of a predicted boundary
    gt_total: int = 0

    def __add__(self, other: "BoundaryCounts") -> "BoundaryCounts":
        return BoundaryCounts(self.pred_matched + other.pred_matched, self.pred_total + other.pred_total,
                              self.gt_matched + other.gt_matched, self.gt_total + other.gt_total)

    @property
    def precision(self) -> float:
        """Share of predicted boundary pixels near a true one (1 when nothing was predicted)."""
        return self.pred_matched / self.pred_total if self.pred_total else 1.0

    @property
    def recall(self) -> float:
        """Share of true boundary pixels near a predicted one (1 when there are none)."""
        return self.gt_matched / self.gt_total if self.gt_total else 1.0

    @property
    def f_score(self) -> float:
        """2PR / (P + R); a boundary present on one side only gives 0, none on either side gives 1."""
        if self.pred_total == 0 and self.gt_total > 0 or self.gt_total == 0 and self.pred_total > 0:
            return 0.0
        precision, recall = self.precision, self.recall
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def boundary_counts(pred: np.ndarray, gt: np.ndarray, radius: int = 2) -> BoundaryCounts:
    """Matched and total boundary pixels of one prediction against its ground truth."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    pred_edges, gt_edges = label_boundaries(pred), label_boundaries(gt)
    return BoundaryCounts(
        pred_matched=int((pred_edges & dilate(gt_edges, radius)).sum()),
        pred_total=int(pred_edges.sum()),
        gt_matched=int((gt_edges & dilate(pred_edges, radius)).sum()),
        gt_total=int(gt_edges.sum()),
    )


class AgreementCounter:
    """Pixels on which each pair of methods gives the same label, summed over images."""

    def __init__(self, methods: tuple[str, ...]) -> None:
        self.methods = methods
        self.same = {pair: 0 for pair in combinations(methods, 2)}
        self.pixels = 0

    def update(self, labels: Mapping[str, np.ndarray]) -> None:
        first = np.asarray(labels[self.methods[0]])
        for a, b in self.same:
            self.same[(a, b)] += int(np.count_nonzero(np.asarray(labels[a]) == np.asarray(labels[b])))
        self.pixels += first.size

    def fraction(self, a: str, b: str) -> float:
        if a == b:
            return 1.0
        key = (a, b) if (a, b) in self.same else (b, a)
        return self.same[key] / self.pixels if self.pixels else float("nan")

    def to_dict(self) -> dict[str, dict[str, float]]:
        """{method: {other method: fraction of pixels with the same label}} (symmetric, 1 on the diagonal)."""
        return {a: {b: self.fraction(a, b) for b in self.methods} for a in self.methods}
