"""Export verification refuses graphs with the right shapes but the wrong answers, and passes a right one.

The "graphs" here are runners with the interface of the ONNX/TorchScript ones (uint8 NHWC -> labels,
logits) that return segcli's own reference logits, deliberately spoiled: labels wrong on a fraction of
the pixels (logits untouched), or logits shifted by a multiple of the documented bound (labels untouched).
Each spoils one thing only, so each of the two gates (label agreement, logit bound) is tested alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from robustness_support import tiny_model, tiny_record
from segcli.export.verify import VerificationReport, check_shapes, reference_logits, run_checks

SHAPES = check_shapes((32, 48), dynamic=True)
_REFERENCE: dict[bytes, np.ndarray] = {}  # the runners' own copy of the reference, computed once per scene batch


@pytest.fixture(scope="module")
def model_and_record():
    return tiny_model(), tiny_record()


def spoiled_runner(model, record, *, wrong_label_fraction=0.0, logit_shift=0.0, logit_noise=0.0, seed=0):
    rng = np.random.default_rng(seed)

    def run(images: np.ndarray):
        key = images.tobytes() + bytes(str(images.shape), "ascii")
        if key not in _REFERENCE:
            _REFERENCE[key] = reference_logits(model, record, images).numpy().astype(np.float32)
        logits = _REFERENCE[key].copy()
        scale = max(1.0, float(np.abs(logits).max()))
        logits = logits + np.float32(logit_shift * scale) + rng.normal(0, logit_noise, logits.shape).astype(np.float32)
        labels = logits.argmax(1)
        flat = labels.reshape(-1)  # exactly that fraction of the pixels, chosen at random
        wrong = rng.permutation(flat.size)[:round(wrong_label_fraction * flat.size)]
        flat[wrong] = (flat[wrong] + 1) % logits.shape[1]
        return labels, logits

    return run


def verify(runner, model, record) -> VerificationReport:
    return run_checks(runner, model, record, SHAPES, VerificationReport("onnx", "a test runner", "segcli"))


def test_a_correct_graph_passes(model_and_record):
    report = verify(spoiled_runner(*model_and_record, logit_noise=1e-6), *model_and_record)
    assert report.passed, report.lines()
    assert [(c.batch, c.height, c.width) for c in report.checks] == SHAPES
    assert all(c.label_agreement == 1.0 and c.max_logit_diff < 1e-4 for c in report.checks)


@pytest.mark.parametrize("fraction", [0.02, 0.01])
def test_labels_wrong_on_a_few_percent_of_pixels_are_refused(model_and_record, fraction):
    report = verify(spoiled_runner(*model_and_record, wrong_label_fraction=fraction), *model_and_record)
    assert not report.passed
    for check in report.checks:
        assert check.max_logit_diff == 0.0  # the logits are segcli's own: only the labels gate can refuse
        assert check.label_agreement == pytest.approx(1 - fraction, abs=1e-3)
        assert check.problem == "labels agree on less than 99.5% of pixels"


def test_labels_wrong_on_a_tenth_of_a_percent_pass(model_and_record):
    """The other side of the 99.5% gate: rounding may flip a label on a few boundary pixels."""
    report = verify(spoiled_runner(*model_and_record, wrong_label_fraction=0.001), *model_and_record)
    assert report.passed, report.lines()


@pytest.mark.parametrize("shift", [1e-2, 3e-3])
def test_logits_off_with_the_labels_equal_are_refused(model_and_record, shift):
    """Plain preprocessing: the bound is 1e-3 of the logits' scale (float rounding); 3x and 10x it are refused."""
    model, record = model_and_record
    assert not record.preprocessing.resize_shorter
    report = verify(spoiled_runner(model, record, logit_shift=shift), model, record)
    assert not report.passed
    for check in report.checks:
        assert check.label_agreement == 1.0  # a constant shift keeps every argmax
        assert check.problem == "logits differ by more than the bound"
        assert check.logit_tolerance == pytest.approx(check.max_logit_diff / shift * 1e-3, rel=1e-3)


def test_non_finite_logits_are_refused(model_and_record):
    model, record = model_and_record
    good = spoiled_runner(model, record)

    def with_nan(images):
        labels, logits = good(images)
        logits[0, 0, 0, 0] = np.nan
        return labels, logits

    report = verify(with_nan, model, record)
    assert not report.passed and all(check.problem == "non-finite logits" for check in report.checks)


@pytest.mark.parametrize("size, dynamic, expected", [
    ((64, 64), True, [(1, 64, 64), (2, 49, 43)]),     # 64 * 3 // 4 + 1 = 49, 64 * 5 // 8 + 3 = 43
    ((96, 128), True, [(1, 96, 128), (2, 73, 83)]),   # 96 * 3 // 4 + 1 = 73, 128 * 5 // 8 + 3 = 83
    ((40, 36), True, [(1, 40, 36), (2, 32, 32)]),     # 31 and 25: raised to the 32-pixel floor
    ((64, 48), False, [(1, 64, 48), (1, 64, 48)]),    # a static graph: two scenes at its one size
])
def test_the_shapes_checked_are_the_export_size_and_for_a_dynamic_graph_another(size, dynamic, expected):
    """A second size and batch that tracing could have frozen: every number differs from the first shape."""
    assert check_shapes(size, dynamic) == expected
