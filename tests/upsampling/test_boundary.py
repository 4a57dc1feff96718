"""Boundary F-score and pairwise agreement on hand-made label maps (expected values worked out by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from segcli.upsampling.boundary import AgreementCounter, BoundaryCounts, boundary_counts, dilate, label_boundaries


def _split(at: int, size: int = 6) -> np.ndarray:
    """A size x size map: class 0 left of column `at`, class 1 from it on."""
    labels = np.zeros((size, size), dtype=np.uint8)
    labels[:, at:] = 1
    return labels


def test_boundaries_mark_both_sides_of_an_edge():
    edges = label_boundaries(_split(3))
    expected = np.zeros((6, 6), dtype=bool)
    expected[:, 2:4] = True
    np.testing.assert_array_equal(edges, expected)


def test_dilation_is_a_chebyshev_square():
    mask = np.zeros((7, 7), dtype=bool)
    mask[3, 3] = True
    grown = dilate(mask, 2)
    assert grown.sum() == 25 and grown[1:6, 1:6].all()
    np.testing.assert_array_equal(dilate(mask, 0), mask)


def test_boundary_one_column_off():
    gt, pred = _split(3), _split(4)  # gt boundary columns 2,3; predicted 3,4 (12 pixels each)
    exact = boundary_counts(pred, gt, radius=0)
    assert (exact.pred_matched, exact.pred_total, exact.gt_matched, exact.gt_total) == (6, 12, 6, 12)
    assert exact.precision == 0.5 and exact.recall == 0.5 and exact.f_score == 0.5
    assert boundary_counts(pred, gt, radius=1).f_score == 1.0


def test_boundary_two_columns_off():
    gt, pred = _split(3), _split(5)  # predicted boundary columns 4,5
    one = boundary_counts(pred, gt, radius=1)  # column 4 is 1 from column 3; 5 is 2 away; likewise 3 vs 2
    assert (one.precision, one.recall, one.f_score) == (0.5, 0.5, 0.5)
    assert boundary_counts(pred, gt, radius=2).f_score == 1.0


def test_boundary_spurious_blob_lowers_precision_only():
    gt = _split(3)
    pred = gt.copy()
    pred[0, 0] = 1  # adds boundary pixels (0,0), (0,1), (1,0): 15 predicted in all
    exact = boundary_counts(pred, gt, radius=0)
    assert exact.pred_total == 15 and exact.pred_matched == 12 and exact.recall == 1.0
    assert exact.f_score == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    near = boundary_counts(pred, gt, radius=1)  # (0,1) is 1 column from column 2
    assert near.pred_matched == 13
    assert near.f_score == pytest.approx(26 / 28)


def test_boundary_counts_pool_over_images():
    total = boundary_counts(_split(4), _split(3), 0) + boundary_counts(_split(3), _split(3), 0)
    assert (total.pred_matched, total.pred_total, total.gt_matched, total.gt_total) == (18, 24, 18, 24)
    assert total.f_score == pytest.approx(0.75)


def test_boundary_empty_cases():
    flat = np.zeros((4, 4), dtype=np.uint8)
    assert boundary_counts(flat, flat).f_score == 1.0
    assert boundary_counts(flat, _split(2, 4)).f_score == 0.0
    assert boundary_counts(_split(2, 4), flat).f_score == 0.0
    assert BoundaryCounts().f_score == 1.0


def test_boundary_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        boundary_counts(np.zeros((2, 3)), np.zeros((3, 2)))


def test_agreement_by_hand():
    a = np.array([[0, 0], [1, 1]])
    b = np.array([[0, 1], [1, 1]])
    c = np.array([[1, 1], [1, 1]])
    counter = AgreementCounter(("a", "b", "c"))
    counter.update({"a": a, "b": b, "c": c})
    assert counter.fraction("a", "b") == 0.75
    assert counter.fraction("c", "a") == 0.5
    assert counter.fraction("b", "c") == 0.75
    # a second 1x2 image where all agree: pooled over 6 pixels
    counter.update({"a": np.array([[2, 2]]), "b": np.array([[2, 2]]), "c": np.array([[2, 2]])})
    table = counter.to_dict()
    assert table["a"]["c"] == pytest.approx(4 / 6) and table["c"]["a"] == table["a"]["c"]
    assert table["b"]["b"] == 1.0
