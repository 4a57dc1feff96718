"""Dense CRF: it sharpens a blurred prediction along image edges; fast paths agree with it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from segcli.crf import CRF_PRESETS, CRFParameterError, CRFParams, crf_available, dense_crf
from segcli.errors import MissingDependencyError, UnknownNameError

needs_crf = pytest.mark.skipif(not crf_available(), reason="pydensecrf is not installed")

SIZE = 64
COLORS = np.array([[30, 120, 40], [220, 40, 40], [40, 60, 220]])


def box_blur(planes: np.ndarray, k: int) -> np.ndarray:
    """Mean over a k x k window (edge padded), computed with summed-area tables."""
    pad = k // 2
    padded = np.pad(planes, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    table = np.pad(np.cumsum(np.cumsum(padded, 1), 2), ((0, 0), (1, 0), (1, 0)))
    h, w = planes.shape[1:]
    return (table[:, k:k + h, k:k + w] - table[:, :h, k:k + w] - table[:, k:k + h, :w] + table[:, :h, :w]) / k**2


def scene(seed: int = 0):
    """Ground truth (background, a disc, a rectangle) and an image whose colours follow it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    truth = np.zeros((SIZE, SIZE), np.int64)
    truth[(yy - 24) ** 2 + (xx - 22) ** 2 < 14**2] = 1
    truth[(yy > 36) & (yy < 58) & (xx > 30) & (xx < 60)] = 2
    image = np.clip(COLORS[truth] + rng.normal(0, 8, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return truth, image, rng


def blurred_prediction(truth: np.ndarray, rng: np.random.Generator, n_classes: int = 3) -> np.ndarray:
    """One-hot truth over the first 3 labels, box-blurred, mixed with noise; other labels ~1e-5."""
    onehot = np.eye(3)[truth].transpose(2, 0, 1)
    noise = rng.dirichlet(np.ones(3), size=truth.shape).transpose(2, 0, 1)
    present = 0.55 * box_blur(onehot, 11) + 0.45 * noise
    probs = np.full((n_classes, *truth.shape), 0.0)
    probs[:3] = present
    probs[3:] = rng.uniform(0, 2e-4, (n_classes - 3, *truth.shape))
    return (probs / probs.sum(0)).astype(np.float32)


def accuracy(probs: np.ndarray, truth: np.ndarray) -> float:
    return float((probs.argmax(0) == truth).mean())


def test_defaults_are_deeplab_v2_and_presets_differ():
    params = CRFParams()
    assert (params.bilateral_weight, params.bilateral_xy, params.bilateral_rgb) == (4, 67, 3)
    assert (params.gaussian_weight, params.gaussian_xy, params.iterations) == (3, 1, 10)
    assert CRF_PRESETS["deeplab-v2"] == params
    assert CRF_PRESETS["deeplab-v1"].bilateral_xy == 121
    assert CRF_PRESETS["pydensecrf-readme"].iterations == 5
    assert CRFParams.from_preset("deeplab-v1") is CRF_PRESETS["deeplab-v1"]
    with pytest.raises(UnknownNameError, match="deeplab-v2"):
        CRFParams.from_preset("deeplab-v9")
    with pytest.raises(CRFParameterError, match="iterations"):
        CRFParams(iterations=0)
    with pytest.raises(CRFParameterError, match="bilateral_rgb"):
        CRFParams(bilateral_rgb=0)


@needs_crf
def test_crf_improves_blurred_prediction():
    truth, image, rng = scene()
    probs = blurred_prediction(truth, rng)
    before = accuracy(probs, truth)
    assert before < 0.96  # the blur and noise really do break the edges
    refined = dense_crf(probs, image, CRFParams())
    assert refined.dtype == np.float32 and refined.shape == probs.shape
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-4)
    assert accuracy(refined, truth) > before + 0.03
    assert accuracy(refined, truth) > 0.98


@needs_crf
def test_crf_follows_the_image_not_just_smoothing():
    """The appearance (bilateral) kernel is what pulls labels onto the image edges."""
    truth, image, rng = scene(1)
    probs = blurred_prediction(truth, rng)
    no_appearance = dense_crf(probs, image, CRFParams(bilateral_weight=0))
    with_appearance = dense_crf(probs, image, CRFParams())
    assert accuracy(with_appearance, truth) > accuracy(no_appearance, truth)


@needs_crf
def test_label_subset_agrees_with_full_crf_and_zeroes_pruned_labels():
    truth, image, rng = scene(2)
    probs = blurred_prediction(truth, rng, n_classes=21)
    full = dense_crf(probs, image)
    fast = dense_crf(probs, image, label_subset="auto")
    assert fast.shape == (21, SIZE, SIZE)
    assert np.all(fast[3:] == 0)
    np.testing.assert_allclose(fast.sum(0), 1.0, atol=1e-4)
    assert (full.argmax(0) == fast.argmax(0)).mean() >= 0.99
    explicit = dense_crf(probs, image, label_subset=[0, 1, 2])
    np.testing.assert_allclose(explicit, fast, atol=1e-6)


@needs_crf
def test_single_surviving_label_is_certain_everywhere():
    _, image, _ = scene()
    probs = np.full((4, SIZE, SIZE), 1e-5, np.float32)
    probs[2] = 1 - 3e-5
    out = dense_crf(probs, image, label_subset="auto")
    assert np.all(out[2] == 1) and np.all(out[[0, 1, 3]] == 0)


@needs_crf
def test_max_side_runs_reduced_and_returns_full_size():
    truth, image, rng = scene(3)
    probs = blurred_prediction(truth, rng)
    full = dense_crf(probs, image)
    reduced = dense_crf(probs, image, max_side=48)
    assert reduced.shape == probs.shape
    np.testing.assert_allclose(reduced.sum(0), 1.0, atol=1e-4)
    assert (reduced.argmax(0) == full.argmax(0)).mean() > 0.95
    # max_side at or above the image size is the full path
    np.testing.assert_array_equal(dense_crf(probs, image, max_side=SIZE), full)


def test_shapes_checked_before_pydensecrf():
    _, image, _ = scene()
    probs = np.full((3, SIZE, SIZE), 1 / 3, np.float32)
    with pytest.raises(ValueError, match="upsample"):
        dense_crf(probs[:, :32], image)
    with pytest.raises(ValueError, match="H, W, 3"):
        dense_crf(probs, image.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[classes, H, W\]"):
        dense_crf(probs[0], image)
    with pytest.raises(ValueError, match="not logits"):
        dense_crf(probs * 10 - 5, image)
    with pytest.raises(ValueError, match="label_subset"):
        dense_crf(probs, image, label_subset=[0, 7])


def test_missing_pydensecrf_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    assert crf_available() is False
    _, image, _ = scene()
    probs = np.full((3, SIZE, SIZE), 1 / 3, np.float32)
    with pytest.raises(MissingDependencyError, match="pip install pydensecrf2"):
        dense_crf(probs, image)
