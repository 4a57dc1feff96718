"""The dense CRF in torch (segcli/crf_torch.py) against pydensecrf's reference (segcli.crf.dense_crf), and
how `--crf` picks it (segcli.crf.refine / method_for)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import segcli.crf as crf_module
from segcli.crf import CRFParams, dense_crf, method_for, refine
from segcli.crf_torch import DenseCRF, dense_crf_torch
from crf_torch_inputs import scene_case


def agreement(height: int, width: int, n_classes: int, confidence: float, params: CRFParams = CRFParams()):
    pytest.importorskip("pydensecrf.densecrf")
    probabilities, image = scene_case(height, width, n_classes, confidence, seed=n_classes)
    reference = dense_crf(probabilities, image, params)
    ours = dense_crf_torch(probabilities, image, params)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32 and ours.shape == reference.shape
    changed = float((reference.argmax(0) != probabilities.argmax(0)).mean())
    return float((ours.numpy().argmax(0) == reference.argmax(0)).mean()), changed, ours.numpy(), reference


@pytest.mark.parametrize("height, width", [(48, 80), (80, 48)])
@pytest.mark.parametrize("n_classes", [9, 21])
@pytest.mark.parametrize("confidence", [6.0, 1.5])  # mean top probability ~0.7-0.8 (confident), ~0.17-0.3 (flat)
def test_torch_crf_matches_pydensecrf_reference(height, width, n_classes, confidence):
    equal, changed, ours, reference = agreement(height, width, n_classes, confidence)
    assert changed > 0.05  # the CRF does move pixels here: agreement is not just agreement with the input
    assert equal >= 0.99
    assert np.abs(ours - reference).max() < 1e-3  # measured: <= 1e-5 (same lattice, float32 both)


@pytest.mark.parametrize("params", [CRFParams(iterations=5, bilateral_weight=10, bilateral_xy=80, bilateral_rgb=13,
                                              gaussian_weight=3, gaussian_xy=3),
                                    CRFParams(iterations=3, gaussian_weight=0.0)])
def test_other_kernel_settings_match_too(params):
    equal, _, ours, reference = agreement(40, 56, 5, 3.0, params)
    assert equal >= 0.99 and np.abs(ours - reference).max() < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("height, width", [(288, 400), (400, 288)])
@pytest.mark.parametrize("n_classes, confidence", [(9, 6.0), (21, 1.5)])
def test_torch_crf_matches_pydensecrf_reference_larger(height, width, n_classes, confidence):
    equal, changed, _, _ = agreement(height, width, n_classes, confidence)
    assert changed > 0.01 and equal >= 0.99


def test_one_crf_serves_any_probabilities_on_the_image():
    """The lattices depend on the image only: one DenseCRF, reused, gives what a fresh one gives."""
    first, image = scene_case(30, 40, 4, 3.0, seed=1)
    second, _ = scene_case(30, 40, 4, 1.0, seed=2)
    crf = DenseCRF.build(torch.tensor(image), CRFParams())
    crf.inference(torch.tensor(first), 3)
    reused = crf.inference(torch.tensor(second), 3)
    assert torch.allclose(reused, dense_crf_torch(second, image, CRFParams(iterations=3)), atol=1e-6)


def test_refine_torch_reports_what_ran():
    probabilities, image = scene_case(24, 32, 3, 3.0)
    refined, run = refine(probabilities, image, CRFParams(iterations=4), method="torch")
    assert isinstance(refined, np.ndarray) and refined.dtype == np.float32 and refined.shape == probabilities.shape
    assert np.allclose(refined.sum(0), 1.0, atol=1e-5)
    report = run.to_dict()
    assert (report["method"], report["iterations"], report["resolution"]) == ("torch", 4, [32, 24])
    assert report["labels_kept"] == [0, 1, 2] and run.describe() == "torch CRF: 4 iterations at 32x24, 3 of 3 labels"


def test_fast_means_torch_on_cuda_and_pydensecrf_on_the_cpu():
    pytest.importorskip("pydensecrf.densecrf")
    assert method_for("fast", torch.device("cuda", 0)) == "torch" and method_for("fast", "cuda") == "torch"
    assert method_for("fast", torch.device("cpu")) == "fast" and method_for("fast", None) == "fast"
    assert method_for("full", torch.device("cuda")) == "full" and method_for("torch", "cpu") == "torch"


def test_without_pydensecrf_fast_falls_back_to_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    probabilities, image = scene_case(24, 32, 3, 3.0)
    refined, run = refine(probabilities, image, CRFParams(iterations=2))
    assert run.method == "torch" and run.iterations == 2
    assert np.allclose(refined, dense_crf_torch(probabilities, image, CRFParams(iterations=2)).numpy(), atol=1e-6)
    with pytest.raises(crf_module.MissingDependencyError, match="segcli"):
        refine(probabilities, image, CRFParams(), method="full")


def test_index_path_used_on_cuda_matches_the_reference_on_the_cpu(monkeypatch):
    """The splat/slice by index_add_/index_select (the CUDA path), forced on the CPU for the whole CRF."""
    import segcli.crf_torch as crf_torch

    real = crf_torch.Lattice.build
    monkeypatch.setattr(crf_torch.Lattice, "build", classmethod(lambda cls, f, sparse=None: real(f, sparse=False)))
    assert DenseCRF.build(torch.zeros((4, 5, 3), dtype=torch.uint8), CRFParams()).kernels[0].lattice.splat is None
    equal, changed, ours, reference = agreement(40, 64, 9, 3.0)
    assert equal >= 0.99 and changed > 0.05 and np.abs(ours - reference).max() < 1e-3
