"""The torch dense CRF on CUDA: the same labels as on the CPU, and `--crf` picks it on a CUDA engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crf_torch_inputs import scene_case
from segcli.crf import CRFParams, refine
from segcli.crf_torch import dense_crf_torch
from segcli.permutohedral import Lattice

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("height, width, n_classes, confidence", [(48, 80, 9, 6.0), (80, 48, 21, 1.5),
                                                                  (256, 320, 21, 3.0)])
def test_cuda_labels_match_the_cpu_torch_crf(height, width, n_classes, confidence):
    probabilities, image = scene_case(height, width, n_classes, confidence, seed=3)
    on_cpu = dense_crf_torch(probabilities, image, CRFParams())
    on_gpu = dense_crf_torch(torch.tensor(probabilities, device="cuda"), torch.tensor(image, device="cuda"), CRFParams())
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    assert float((on_gpu.argmax(0).cpu() == on_cpu.argmax(0)).float().mean()) >= 0.999
    assert float((on_gpu.cpu() - on_cpu).abs().max()) < 1e-3


def test_cuda_lattice_filter_matches_the_cpu_one():
    features = torch.tensor(np.random.default_rng(0).normal(0, 2, (5000, 5)), dtype=torch.float32)
    values = torch.rand(5000, 7, generator=torch.Generator().manual_seed(0))
    on_cpu = Lattice.build(features).filter(values)
    on_gpu = Lattice.build(features.cuda()).filter(values.cuda())
    assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-5)


def test_fast_crf_on_a_cuda_device_runs_the_torch_crf():
    probabilities, image = scene_case(40, 56, 5, 3.0)
    refined, run = refine(probabilities, image, CRFParams(iterations=3), method="fast", device=torch.device("cuda"))
    assert run.method == "torch" and run.iterations == 3 and isinstance(refined, np.ndarray)
    expected = dense_crf_torch(probabilities, image, CRFParams(iterations=3)).numpy()
    assert float((refined.argmax(0) == expected.argmax(0)).mean()) >= 0.999


def test_engine_on_cuda_refines_with_the_torch_crf_and_matches_the_cpu_reference():
    """The shipped deeplabv3p on CUDA with --crf: the per-image record says torch, and the labels
    match the CPU engine with the reference CRF (pydensecrf) on >= 99% of pixels."""
    pytest.importorskip("pydensecrf.densecrf")
    from segcli.crf import CRFSettings
    from segcli.data.synth import make_scene
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions

    image = make_scene(77, 0, (160, 200)).image
    gpu = SegmentationEngine.load("deeplabv3p", device="cuda", options=InferenceOptions(precision="fp32"))
    cpu = SegmentationEngine.load("deeplabv3p", device="cpu", options=InferenceOptions(precision="fp32"))
    on_gpu = gpu.predict(image, crf=CRFSettings(method="fast"))
    on_cpu = cpu.predict(image, crf=CRFSettings(method="full"))
    assert on_gpu.crf["method"] == "torch" and on_gpu.crf["iterations"] == on_cpu.crf["iterations"]
    assert (on_gpu.labels == on_cpu.labels).mean() >= 0.99
