"""Dense CRF: it sharpens a blurred prediction along image edges; fast paths agree with it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from segcli.crf import CRF_PRESETS, CRFParameterError, CRFParams, crf_available, dense_crf, refine
from segcli.errors import MissingDependencyError, UnknownNameError
from crf_reference import pydensecrf_reference

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


def big_scene(size: int = 288, n_classes: int = 6, seed: int = 4):
    """A scene large enough for the fast CRF's two scales: shapes, a blurred noisy prediction."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = np.zeros((size, size), np.int64)
    truth[(yy - 60) ** 2 + (xx - 55) ** 2 < 35**2] = 1
    truth[(yy > 90) & (yy < 150) & (xx > 70) & (xx < 150)] = 2
    truth[(yy > 20) & (yy < 40) & (xx > 100)] = 3
    colours = rng.uniform(0, 255, (4, 3))
    image = np.clip(colours[truth] + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    onehot = np.eye(4)[truth].transpose(2, 0, 1)
    logits = np.full((n_classes, size, size), -12.0)
    logits[:4] = 5 * box_blur(onehot, 15) + rng.normal(0, 0.7, (4, size, size))
    exp = np.exp(logits - logits.max(0))
    return truth, image, (exp / exp.sum(0)).astype(np.float32)


@needs_crf
def test_full_method_is_plain_pydensecrf_exactly():
    truth, image, rng = scene(2)
    probs = blurred_prediction(truth, rng, n_classes=5)
    params = CRFParams(iterations=7)
    expected = pydensecrf_reference(probs, image, params)
    np.testing.assert_array_equal(dense_crf(probs, image, params), expected)
    refined, run = refine(probs, image, params, method="full")
    np.testing.assert_array_equal(refined, expected)
    assert (run.method, run.iterations, run.resolution, run.labels) == ("full", 7, (SIZE, SIZE), tuple(range(5)))


@needs_crf
def test_fast_crf_agrees_with_the_reference_and_says_what_ran():
    truth, image, probs = big_scene()
    reference = pydensecrf_reference(probs, image, CRFParams())
    assert (reference.argmax(0) != probs.argmax(0)).mean() > 0.002  # the CRF does change this prediction
    fast, run = refine(probs, image, CRFParams())
    np.testing.assert_allclose(fast.sum(0), 1.0, atol=1e-4)
    assert (fast.argmax(0) == reference.argmax(0)).mean() >= 0.99
    # two scales: capped iterations at half size, then full-size updates on a small band
    assert (run.method, run.iterations, run.resolution, run.band_iterations) == ("fast", 5, (144, 144), 2)
    assert 0 < run.band_fraction < 0.5
    # labels 4 and 5 sit over e^-9 behind the winner everywhere: the pairwise terms (w1 + w2 = 7) cannot lift them
    assert run.labels == (0, 1, 2, 3) and np.all(fast[4:] == 0)
    document = run.to_dict()
    assert document["labels_kept"] == [0, 1, 2, 3] and document["resolution"] == [144, 144]


@needs_crf
def test_small_images_run_the_fast_crf_at_full_size():
    """Below TWO_SCALE_MIN_SIDE the half-size grid would lose thin structures: full size, capped iterations."""
    from segcli.crf import TWO_SCALE_MIN_SIDE

    truth, image, probs = big_scene(size=160)
    assert 160 < TWO_SCALE_MIN_SIDE
    fast, run = refine(probs, image, CRFParams())
    assert (run.iterations, run.resolution) == (5, (160, 160))
    expected = pydensecrf_reference(probs[:4] / probs[:4].sum(0), image, CRFParams(iterations=5))
    assert (fast.argmax(0) == expected.argmax(0)).mean() >= 0.999


@needs_crf
def test_iteration_cap_applies_only_when_the_iterations_were_not_given():
    """On a small image the fast CRF runs at full size, so with every label kept it is the reference
    at the iterations it ran: 5 (capped) when not given, 10 when given."""
    truth, image, rng = scene(3)
    probs = blurred_prediction(truth, rng)  # 3 labels, all within reach
    capped, run = refine(probs, image, CRFParams(iterations=10))
    assert run.iterations == 5
    np.testing.assert_array_equal(capped, pydensecrf_reference(probs, image, CRFParams(iterations=5)))
    given, run = refine(probs, image, CRFParams(iterations=10), iterations_given=True)
    assert run.iterations == 10
    np.testing.assert_array_equal(given, pydensecrf_reference(probs, image, CRFParams(iterations=10)))


@needs_crf
def test_a_nearly_flat_map_gets_the_reference_iterations_at_full_size():
    _, image, probs = big_scene(size=256, seed=6)  # an image big enough for the two scales
    flat = probs ** 0.05  # the same ranking, nearly flat: no shortcut is safe there
    flat = (flat / flat.sum(0)).astype(np.float32)
    refined, run = refine(flat, image, CRFParams())
    assert (run.iterations, run.resolution, run.band_iterations, run.labels) == (10, (256, 256), 0, tuple(range(6)))
    np.testing.assert_array_equal(refined, pydensecrf_reference(flat, image, CRFParams()))


def test_log_margin_is_log_best_over_runner_up():
    from segcli.crf_meanfield import log_margin

    probs = np.random.default_rng(2).dirichlet(np.ones(5), size=(6, 7)).transpose(2, 0, 1).astype(np.float32)
    top = np.sort(probs, axis=0)
    np.testing.assert_allclose(log_margin(probs), np.log(top[-1]) - np.log(top[-2]), rtol=1e-5)


def test_only_labels_that_cannot_win_are_pruned():
    from segcli.crf import labels_that_can_win

    flat = np.random.default_rng(0).dirichlet(np.ones(21) * 50, size=(20, 20)).transpose(2, 0, 1)
    assert list(labels_that_can_win(flat, CRFParams())) == list(range(21))  # nothing pruned on a flat softmax
    probs = np.full((4, 8, 8), 1e-5)
    probs[0], probs[1, 0, 0], probs[2, 5, 5] = 1.0, 2e-3, 5e-4  # 2e-3 > e^-7 = 9.1e-4 > 5e-4
    assert list(labels_that_can_win(probs, CRFParams())) == [0, 1]
    assert list(labels_that_can_win(probs, CRFParams(bilateral_weight=5))) == [0, 1, 2]  # e^-8 = 3.4e-4


@needs_crf
def test_pixel_set_crf_on_every_pixel_is_the_grid_crf():
    import pydensecrf.densecrf as densecrf

    from segcli.crf_meanfield import grid_crf, pixel_set_crf

    truth, image, rng = scene(5)
    probs = blurred_prediction(truth, rng)
    everywhere = np.arange(SIZE * SIZE)
    on_set = pixel_set_crf(densecrf, probs, image, CRFParams(), everywhere).inference(4)
    np.testing.assert_array_equal(np.array(on_set), np.array(grid_crf(densecrf, probs, image, CRFParams()).inference(4)))


def test_dilate_matches_a_direct_maximum_filter():
    from segcli.crf_meanfield import dilate

    mask = np.random.default_rng(1).random((23, 31)) > 0.97
    padded = np.pad(mask, 3)
    expected = np.zeros_like(mask)
    for dy in range(7):
        for dx in range(7):
            expected |= padded[dy:dy + 23, dx:dx + 31]
    np.testing.assert_array_equal(dilate(mask, 3), expected)


@needs_crf
def test_single_surviving_label_is_certain_everywhere():
    _, image, _ = scene()
    probs = np.full((4, SIZE, SIZE), 1e-5, np.float32)
    probs[2] = 1 - 3e-5
    out, run = refine(probs, image)
    assert np.all(out[2] == 1) and np.all(out[[0, 1, 3]] == 0)
    assert run.labels == (2,) and run.iterations == 0


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
    with pytest.raises(CRFParameterError, match="method"):
        refine(probs, image, method="quick")


def test_missing_pydensecrf_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    assert crf_available() is False
    _, image, _ = scene()
    probs = np.full((3, SIZE, SIZE), 1 / 3, np.float32)
    with pytest.raises(MissingDependencyError, match=r"pip install 'segcli\[crf\]'"):
        dense_crf(probs, image)


def test_the_plan_line_states_only_what_runs_on_every_image():
    """Band updates at full size run only where pixels stay uncertain on images of 256 px and more:
    the line printed before any image is seen names them as conditional, never as done."""
    from segcli.crf import BAND_ITERATIONS, CRFParams, CRFSettings, describe_plan

    text = describe_plan(CRFParams(), CRFSettings())["text"]
    assert f"then {BAND_ITERATIONS} at full size on the uncertain pixels" not in text
    assert "may get" in text and "JSON" in text
    plan = describe_plan(CRFParams(), CRFSettings())
    assert plan["iterations"] <= CRFParams().iterations  # "iterations": what runs; "params.iterations": asked
    assert plan["params"]["iterations"] == CRFParams().iterations
