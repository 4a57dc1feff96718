"""ConfusionMatrix at its edges: what mutation testing (`make mutation`, docs/TESTING.md) found untested.

Every expected value is counted by hand here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from segcli.metrics import ConfusionMatrix


def test_one_class_is_a_valid_matrix_and_zero_classes_are_refused():
    matrix = ConfusionMatrix(1)
    matrix.update(np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64))
    assert matrix.matrix.tolist() == [[6]] and matrix.miou() == 1.0 and matrix.fw_iou() == 1.0
    with pytest.raises(ValueError, match="^num_classes must be at least 1$"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="^2 class names for 3 classes$"):
        ConfusionMatrix(3, ["a", "b"])


def test_default_class_names_are_the_indices():
    assert ConfusionMatrix(3).class_names == ("0", "1", "2")
    assert ConfusionMatrix(3).to_dict()["excluded_classes"] == ["0", "1", "2"]


def test_an_empty_matrix_has_no_figures_and_warns_nothing():
    matrix = ConfusionMatrix(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 must be decided, not computed into a RuntimeWarning
        figures = (matrix.pixel_accuracy(), matrix.mean_class_accuracy(), matrix.miou(), matrix.fw_iou())
        document = matrix.to_dict()
    assert all(math.isnan(value) for value in figures)
    assert document["miou"] is None and document["pixel_acc"] is None and document["mean_class_acc"] is None
    assert document["fw_iou"] is None and document["pixels"] == 0


def test_absent_classes_give_nan_without_warnings():
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 0, 1]), np.array([0, 1, 1]))  # class 2 nowhere
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iou, recall = matrix.per_class_iou(), matrix.per_class_accuracy()
    assert iou[:2].tolist() == [0.5, 0.5] and math.isnan(iou[2])
    assert recall[:2].tolist() == [1.0, 0.5] and math.isnan(recall[2])


def test_one_pixel_gives_figures():
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([1]), np.array([1]))
    assert matrix.fw_iou() == 1.0 and matrix.pixel_accuracy() == 1.0


def test_ground_truth_outside_the_classes_is_ignored_like_255():
    matrix = ConfusionMatrix(3)
    target = np.array([0, 3, 254, 255, -1, 2])   # 3 = n, 254 and -1: not classes of this matrix
    pred = np.array([0, 1, 2, 0, 1, 2])
    matrix.update(pred, target)
    assert matrix.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_the_label_range_in_the_error_is_the_matrixs():
    with pytest.raises(ValueError, match=r"^prediction holds labels outside 0\.\.2$"):
        ConfusionMatrix(3).update(np.array([5]), np.array([0]))


def test_tensors_that_track_gradients_are_read():
    matrix = ConfusionMatrix(2)
    pred = torch.tensor([0.0, 1.0, 1.0], requires_grad=True)  # np.asarray refuses these: .detach() first
    matrix.update(pred, torch.tensor([0, 1, 0]))
    assert matrix.matrix.tolist() == [[1, 1], [0, 1]]
