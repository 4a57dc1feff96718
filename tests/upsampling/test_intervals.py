"""Bootstrap intervals and paired verdicts on constructed scores with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from segcli.metrics import ConfusionMatrix
from segcli.upsampling.boundary import BoundaryCounts
from segcli.upsampling.intervals import MethodScores, boundary_f, miou, pixel_accuracy, summarize, verdict

CLASSES = 3


def _scores(rng: np.random.Generator, seeds: int, images: int, error: float) -> MethodScores:
    """Per seed and image, a confusion with about `error` of each class's pixels put in the next class."""
    confusions = np.zeros((seeds, images, CLASSES, CLASSES), dtype=np.int64)
    boundaries = np.zeros((seeds, images, 4), dtype=np.int64)
    for s in range(seeds):
        for n in range(images):
            for c in range(CLASSES):
                pixels = int(rng.integers(500, 1500))
                wrong = int(rng.binomial(pixels, error))
                confusions[s, n, c, c] = pixels - wrong
                confusions[s, n, c, (c + 1) % CLASSES] = wrong
            total = int(rng.integers(80, 120))
            matched = int(rng.binomial(total, 1 - error))
            boundaries[s, n] = (matched, total, matched, total)
    return MethodScores(confusions, boundaries)


def test_vectorised_metrics_match_the_scalar_ones():
    rng = np.random.default_rng(0)
    for _ in range(20):
        matrix = rng.integers(0, 50, size=(4, 4)) * (rng.random((4, 4)) < 0.6)
        reference = ConfusionMatrix(4)
        reference.matrix = matrix.astype(np.int64)
        assert miou(matrix.astype(float)) == pytest.approx(reference.miou())
        assert pixel_accuracy(matrix.astype(float)) == pytest.approx(reference.pixel_accuracy())
    for counts in [(3, 5, 2, 4), (0, 0, 0, 4), (0, 3, 0, 0), (0, 0, 0, 0), (0, 2, 0, 2)]:
        assert boundary_f(np.array(counts, dtype=float)) == pytest.approx(BoundaryCounts(*counts).f_score)


def test_intervals_contain_the_point_estimate_and_keys_are_present():
    rng = np.random.default_rng(1)
    scores = {"good": _scores(rng, 3, 30, 0.05), "bad": _scores(rng, 3, 30, 0.2)}
    result = summarize(scores, draws=500)
    for name, entry in result["methods"].items():
        assert entry["seeds"] == 3 and len(entry["per_seed"]["miou"]) == 3
        for metric in ("miou", "pixel_acc", "boundary_f"):
            low, high = entry[f"{metric}_ci95"]
            assert low <= entry[metric] <= high and low < high, (name, metric)
        assert entry["miou"] == pytest.approx(np.mean(entry["per_seed"]["miou"]))
    assert result["bootstrap"]["resampled"] == ["images", "seeds"] and result["bootstrap"]["images"] == 30
    (pair,) = result["pairwise"]
    assert (pair["a"], pair["b"]) == ("good", "bad")
    assert set(pair["miou"]) == {"difference", "ci95", "significant"} and "significant" in pair


def test_significance_flips_with_the_size_of_the_gap():
    rng = np.random.default_rng(2)
    base = _scores(rng, 3, 40, 0.10)
    same = _scores(rng, 3, 40, 0.10)   # the same error rate, fresh noise: no real difference
    worse = _scores(rng, 3, 40, 0.25)  # clearly worse
    result = summarize({"base": base, "same": same, "worse": worse}, draws=1000)
    pairs = {(p["a"], p["b"]): p for p in result["pairwise"]}
    assert not pairs[("base", "same")]["miou"]["significant"]
    assert not pairs[("base", "same")]["significant"]
    low, high = pairs[("base", "same")]["miou"]["ci95"]
    assert low < 0 < high
    for key in (("base", "worse"), ("same", "worse")):
        assert pairs[key]["miou"]["significant"] and pairs[key]["boundary_f"]["significant"]
        assert pairs[key]["miou"]["difference"] > 0 and pairs[key]["miou"]["ci95"][0] > 0
    assert verdict(pairs[("base", "worse")], "miou").startswith("base beats worse on mIoU")
    assert "no real mIoU difference" in verdict(pairs[("base", "same")], "miou")


def test_identical_methods_differ_by_exactly_zero_and_a_reversed_pair_reads_right():
    rng = np.random.default_rng(3)
    one = _scores(rng, 1, 10, 0.1)
    result = summarize({"a": one, "b": MethodScores(one.confusions.copy(), one.boundaries.copy()),
                        "c": _scores(rng, 1, 10, 0.4)}, draws=300)
    pairs = {(p["a"], p["b"]): p for p in result["pairwise"]}
    assert pairs[("a", "b")]["miou"] == {"difference": 0.0, "ci95": [0.0, 0.0], "significant": False}
    assert result["bootstrap"]["resampled"] == ["images"]
    text = verdict({**pairs[("a", "c")], "a": "c", "b": "a",
                    "miou": {k: (-v if k == "difference" else [-x for x in reversed(v)] if k == "ci95" else v)
                             for k, v in pairs[("a", "c")]["miou"].items()}}, "miou")
    assert text.startswith("a beats c on mIoU") and "(95% CI +" in text


def test_methods_on_different_images_are_refused():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="different numbers of images"):
        summarize({"a": _scores(rng, 1, 3, 0.1), "b": _scores(rng, 1, 4, 0.1)}, draws=10)
