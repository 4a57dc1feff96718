"""ConfusionMatrix on a hand-made case whose figures are worked out by hand below."""

import math

import numpy as np
import pytest
import torch

from segcli.metrics import ConfusionMatrix

# 4 classes; class "c" (2) is absent from both; "d" (3) only in the ground truth; one pixel ignored.
TARGET = np.array([[0, 0, 1, 1],
                   [0, 255, 1, 3]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 1, 0]])  # the 2 sits on the ignored pixel, so it must not count
# Counted pairs (true, pred): (0,0) x2, (0,1) x1, (1,1) x3, (3,0) x1 -> 7 pixels.
# IoU a = 2 / (3 + 3 - 2) = 0.5; IoU b = 3 / (3 + 4 - 3) = 0.75; c absent -> NaN; IoU d = 0 / (1 + 0) = 0.
# mIoU = (0.5 + 0.75 + 0) / 3; pixel acc = 5 / 7; mean class acc = (2/3 + 1 + 0) / 3 = 5 / 9;
# fwIoU = 3/7 * 0.5 + 3/7 * 0.75 + 1/7 * 0.


def make_matrix() -> ConfusionMatrix:
    matrix = ConfusionMatrix(4, ["a", "b", "c", "d"])
    matrix.update(PRED, TARGET)
    return matrix


def test_counts_and_ignore():
    matrix = make_matrix()
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[3, 0] = 2, 1, 3, 1
    np.testing.assert_array_equal(matrix.matrix, expected)


def test_hand_computed_figures():
    matrix = make_matrix()
    iou = matrix.per_class_iou()
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(0.75) and iou[3] == 0.0
    assert math.isnan(iou[2])
    assert matrix.miou() == pytest.approx(1.25 / 3)
    assert matrix.pixel_accuracy() == pytest.approx(5 / 7)
    assert matrix.mean_class_accuracy() == pytest.approx(5 / 9)
    assert matrix.fw_iou() == pytest.approx(3 / 7 * 0.5 + 3 / 7 * 0.75)


def test_to_dict_keys_and_excluded():
    result = make_matrix().to_dict()
    assert {"miou", "pixel_acc", "mean_class_acc", "fw_iou", "per_class", "excluded_classes"} <= set(result)
    assert result["per_class"] == {"a": pytest.approx(0.5), "b": pytest.approx(0.75), "c": None, "d": 0.0}
    assert result["excluded_classes"] == ["c"]
    assert result["pixels"] == 7


def test_accumulates_over_updates_and_takes_tensors():
    matrix = ConfusionMatrix(4, ["a", "b", "c", "d"])
    matrix.update(torch.from_numpy(PRED[:1]), torch.from_numpy(TARGET[:1]))
    matrix.update(PRED[1:], TARGET[1:])
    np.testing.assert_array_equal(matrix.matrix, make_matrix().matrix)


def test_bad_inputs():
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="pixels"):
        matrix.update(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="outside"):
        matrix.update(np.array([3]), np.array([0]))
