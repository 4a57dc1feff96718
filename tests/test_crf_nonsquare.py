"""The fast CRF on non-square images agrees with pydensecrf's full reference.

A pixel's (x, y) comes from its flat index with the image WIDTH (row-major: index = y * width + x);
with the height in its place only non-square images go wrong, so every case here has height != width,
both ways round. The oracle is pydensecrf's DenseCRF2D recipe written out in this file
(https://github.com/lucasb-eyer/pydensecrf, README "Usage").
"""

from __future__ import annotations

import numpy as np
import pytest

from segcli.crf import TWO_SCALE_MIN_SIDE, CRFParams, dense_crf, refine
from crf_reference import pydensecrf_reference

pytest.importorskip("pydensecrf.densecrf")  # turned into a failure under SEGCLI_REQUIRE_EXTRAS=1 (conftest)

SHAPES = [(48, 80), (80, 48)]
BIG_SHAPES = [(288, 448), (448, 288)]


def box_blur(planes: np.ndarray, k: int) -> np.ndarray:
    pad = k // 2
    padded = np.pad(planes, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    table = np.pad(np.cumsum(np.cumsum(padded, 1), 2), ((0, 0), (1, 0), (1, 0)))
    h, w = planes.shape[1:]
    return (table[:, k:k + h, k:k + w] - table[:, :h, k:k + w] - table[:, k:k + h, :w] + table[:, :h, :w]) / k**2


def scene(height: int, width: int, n_classes: int = 5, seed: int = 0):
    """Shapes placed relative to each side (so both orientations hold all of them), an image whose colours
    follow them, and a blurred, noisy softmax over the labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width] / np.array([height, width])[:, None, None]
    truth = np.zeros((height, width), np.int64)
    truth[(yy - 0.3) ** 2 + (xx - 0.25) ** 2 < 0.2**2] = 1
    truth[(yy > 0.5) & (yy < 0.85) & (xx > 0.45) & (xx < 0.9)] = 2
    truth[(yy > 0.08) & (yy < 0.2) & (xx > 0.55)] = 3
    colours = rng.uniform(0, 255, (4, 3))
    image = np.clip(colours[truth] + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    onehot = np.eye(4)[truth].transpose(2, 0, 1)
    logits = np.full((n_classes, height, width), -12.0)
    logits[:4] = 5 * box_blur(onehot, 15) + rng.normal(0, 0.7, (4, height, width))
    exp = np.exp(logits - logits.max(0))
    return image, (exp / exp.sum(0)).astype(np.float32)


@pytest.mark.parametrize("height, width", SHAPES)
def test_pixel_set_crf_on_every_pixel_of_a_non_square_image_is_the_reference(height, width):
    import pydensecrf.densecrf as densecrf

    from segcli.crf_meanfield import pixel_set_crf

    image, probs = scene(height, width, n_classes=4)
    params = CRFParams(iterations=4)
    everywhere = np.arange(height * width)
    on_set = np.array(pixel_set_crf(densecrf, probs, image, params, everywhere).inference(4)).reshape(4, height, width)
    np.testing.assert_allclose(on_set, pydensecrf_reference(probs, image, params), atol=1e-4)


@pytest.mark.parametrize("height, width", SHAPES)
def test_full_crf_on_a_non_square_image_is_the_reference(height, width):
    image, probs = scene(height, width)
    params = CRFParams(iterations=5)
    np.testing.assert_allclose(dense_crf(probs, image, params), pydensecrf_reference(probs, image, params), atol=1e-5)
    fast, run = refine(probs, image, params)  # small: full size, every label that can win
    assert run.resolution == (width, height)
    expected = pydensecrf_reference(probs[list(run.labels)] / probs[list(run.labels)].sum(0), image, params)
    assert (fast.argmax(0) == np.array(run.labels)[expected.argmax(0)]).mean() >= 0.999


@pytest.mark.parametrize("height, width", BIG_SHAPES)
def test_two_scale_fast_crf_on_a_non_square_image_agrees_with_the_reference(height, width):
    assert min(height, width) >= TWO_SCALE_MIN_SIDE  # the two-scale path with its band, not the full-size one
    image, probs = scene(height, width, n_classes=6, seed=4)
    expected = pydensecrf_reference(probs, image, CRFParams())
    assert (expected.argmax(0) != probs.argmax(0)).mean() > 0.002  # the CRF does change this prediction
    fast, run = refine(probs, image, CRFParams())
    assert run.resolution == (width // 2, height // 2) and run.band_iterations == 2 and 0 < run.band_fraction
    changed = expected.argmax(0) != probs.argmax(0)
    agree = fast.argmax(0) == expected.argmax(0)
    assert agree.mean() >= 0.995
    assert agree[changed].mean() >= 0.95  # where the CRF moves a label, the fast CRF moves it the same way
    # its probabilities, not just its labels: within 0.05 of the reference on all but ~0.06% of the pixels here
    # (band pixels placed with the height instead of the width: ~0.27%)
    assert (np.abs(fast - expected).max(0) > 0.05).mean() < 0.0012
