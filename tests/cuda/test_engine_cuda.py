"""The engine on a CUDA GPU: fp32 equals the CPU, bf16/fp16 agree with fp32, a real out-of-memory tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcli.data.synth import make_scene
from segcli.engine import SegmentationEngine, preprocess
from segcli.inference_options import InferenceOptions
from segcli.metrics import ConfusionMatrix
from segcli.tiling import TilingPolicy

pytestmark = pytest.mark.cuda

LEFT_FREE = int(1.5 * 2**30)  # GPU memory left free by the out-of-memory test: less than one 6144^2 forward needs


def scenes(count: int, seed: int = 77) -> list:
    return [make_scene(seed, index, (128, 128)) for index in range(count)]


def engine(device: str, precision: str, **options) -> SegmentationEngine:
    return SegmentationEngine.load("deeplabv3p", device=device,
                                   options=InferenceOptions(precision=precision, **options))


def test_fp32_on_cuda_gives_the_cpus_logits_and_labels():
    cpu, gpu = engine("cpu", "fp32"), engine("cuda", "fp32")
    images = [scene.image for scene in scenes(6)]
    batch = torch.cat([preprocess(image, cpu.record.preprocessing) for image in images])
    expected, got = cpu.forward(batch), gpu.forward(batch).cpu()
    scale = float(expected.abs().max())
    error = float((got - expected).abs().max()) / scale
    print(f"fp32 CUDA vs CPU: max |logit difference| / max |logit| = {error:.2e}")
    assert error < 2e-4  # TF32's 10-bit mantissa would give about 1e-3
    top_two = expected.topk(2, dim=1).values
    clear = (top_two[:, 0] - top_two[:, 1]) > 1e-3 * scale
    assert torch.equal(got.argmax(1)[clear], expected.argmax(1)[clear])
    for image in images:
        assert (gpu.predict(image).labels == cpu.predict(image).labels).mean() >= 0.9999


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precisions_agree_with_fp32(precision):
    reference, half = engine("cuda", "fp32"), engine("cuda", precision)
    assert half.plan.precision == precision
    reference_scores, half_scores = ConfusionMatrix(9), ConfusionMatrix(9)
    agreement = []
    for scene in scenes(12):
        expected, got = reference.predict(scene.image).labels, half.predict(scene.image).labels
        agreement.append((expected == got).mean())
        reference_scores.update(expected, scene.mask)
        half_scores.update(got, scene.mask)
    print(f"{precision} vs fp32 on CUDA: label agreement {np.mean(agreement):.5f}, mIoU "
          f"{half_scores.miou():.4f} vs {reference_scores.miou():.4f}")
    assert np.mean(agreement) >= 0.99 and min(agreement) >= 0.97
    assert abs(half_scores.miou() - reference_scores.miou()) < 0.01


def test_a_real_out_of_memory_falls_back_to_tiles():
    gpu = engine("cuda", "fp32", tiling=TilingPolicy.parse("off"))  # try the whole image first
    gpu.predict(scenes(1)[0].image)  # cuDNN and cuBLAS set up before memory gets short
    image = np.tile(scenes(1, seed=78)[0].image, (48, 48, 1))  # 6144 x 6144
    whole = gpu.predict(image).labels  # with the GPU's memory to itself: no tiles
    notes: list[str] = []
    gpu.on_memory_retry = notes.append
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(max(0, free - LEFT_FREE), dtype=torch.uint8, device="cuda")
    try:
        tiled = gpu.predict(image).labels
    finally:
        del hog
        torch.cuda.empty_cache()
    print("memory retries:", notes)
    assert notes and "out of memory on the whole image" in notes[0] and "tiles" in notes[0]
    assert tiled.shape == image.shape[:2]
    agreement = (tiled == whole).mean()
    print(f"tiled vs whole-image labels: {agreement:.4f} equal")
    assert agreement >= 0.95  # tiles see less context (global pooling) and blend at their edges
