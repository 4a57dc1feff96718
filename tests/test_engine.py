"""The engine's preprocessing, upsampling and batching against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import _presets

from engine_support import engine_of
from segcli.checkpoints.record import (
    CAFFE_PREPROCESSING, IMAGENET_PREPROCESSING, TORCHVISION_PREPROCESSING, CheckpointRecord,
)
from segcli.engine import preprocess, upsample_logits
from segcli.errors import SegcliError


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_torchvision_preprocessing_matches_torchvision_presets():
    image = _image(60, 90)
    expected = _presets.SemanticSegmentation(resize_size=520)(torch.from_numpy(image).permute(2, 0, 1))
    ours = preprocess(image, TORCHVISION_PREPROCESSING)[0]
    assert ours.shape == expected.shape == (3, 520, 780)
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-5)


def test_torchvision_preprocessing_downscales_with_antialias_like_torchvision():
    image = _image(700, 600, seed=1)
    expected = _presets.SemanticSegmentation(resize_size=520)(torch.from_numpy(image).permute(2, 0, 1))
    ours = preprocess(image, TORCHVISION_PREPROCESSING)[0]
    assert ours.shape == expected.shape == (3, 606, 520)  # torchvision floors the long side
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_caffe_preprocessing_is_bgr_minus_mean_in_byte_range():
    image = _image(5, 7, seed=2)
    ours = preprocess(image, CAFFE_PREPROCESSING)[0].numpy()
    bgr = image[:, :, ::-1].astype(np.float64) - np.array([104.00699, 116.66877, 122.67891])
    np.testing.assert_allclose(ours, bgr.transpose(2, 0, 1), atol=1e-4)


def test_imagenet_preprocessing_keeps_size_and_normalises():
    image = _image(9, 4, seed=3)
    ours = preprocess(image, IMAGENET_PREPROCESSING)[0].numpy()
    expected = (image / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(ours, expected.transpose(2, 0, 1), atol=1e-5)


def test_preprocess_rejects_non_rgb_input():
    with pytest.raises(SegcliError, match="HxWx3 uint8"):
        preprocess(np.zeros((4, 4), dtype=np.uint8), IMAGENET_PREPROCESSING)


def test_upsample_logits_is_bilinear_without_aligned_corners():
    logits = torch.randn(1, 3, 4, 5)
    expected = F.interpolate(logits, size=(13, 11), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample_logits(logits.half(), (13, 11)), expected, atol=5e-3, rtol=5e-3)
    assert upsample_logits(logits, (4, 5)) is logits


class _HalfResolutionNet(nn.Module):
    """A tiny net whose logits are at half resolution, to check upsampling to the image size."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, num_classes, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


def _record(num_classes: int = 3) -> CheckpointRecord:
    return CheckpointRecord(
        name="test", model="lraspp", dataset="test", categories=tuple(f"c{i}" for i in range(num_classes)),
        filename="test.safetensors",
    )


def test_engine_predict_matches_a_manual_forward_pass():
    net = _HalfResolutionNet()
    engine = engine_of(net, _record())
    image = _image(21, 17, seed=4)
    prediction = engine.predict(image, return_probabilities=True)
    with torch.no_grad():
        logits = net(preprocess(image, IMAGENET_PREPROCESSING))
        expected = torch.softmax(F.interpolate(logits, size=(21, 17), mode="bilinear", align_corners=False), 1)[0]
    assert prediction.labels.shape == (21, 17) and prediction.labels.dtype == np.uint8
    np.testing.assert_allclose(prediction.probabilities, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(prediction.labels, expected.argmax(0).numpy())
    assert set(prediction.timings_ms) >= {"preprocess", "forward", "upsample"}


def test_engine_batches_same_size_images_and_keeps_order():
    engine = engine_of(_HalfResolutionNet(), _record())
    images = [_image(16, 16, 5), _image(10, 12, 6), _image(16, 16, 7)]
    batched = engine.predict_batch(images, return_probabilities=True)
    one_by_one = [engine.predict(image, return_probabilities=True) for image in images]
    assert [p.labels.shape for p in batched] == [(16, 16), (10, 12), (16, 16)]
    for together, alone in zip(batched, one_by_one):
        np.testing.assert_allclose(together.probabilities, alone.probabilities, atol=1e-5)


# --- the fast path: bf16, channels_last, CRF shortcuts -------------------------------------------

from segcli.device import cpu_supports_bf16  # noqa: E402
import dataclasses  # noqa: E402


class _SmallConvNet(nn.Module):
    """Three 3x3 convolutions with BatchNorm, like a backbone stem, at full resolution."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, num_classes, 1),
        )

    def forward(self, x):
        return self.body(x)


@pytest.mark.skipif(not cpu_supports_bf16(), reason="the CPU has no native bf16")
def test_bf16_channels_last_agrees_with_fp32_except_at_near_ties():
    net = _SmallConvNet().eval()
    image = _image(48, 64, seed=8)
    reference = engine_of(net, _record(5))
    fp32_logits = reference.forward(preprocess(image, IMAGENET_PREPROCESSING))[0]
    fast = engine_of(_SmallConvNet().eval(), _record(5), precision="bf16", channels_last=True)
    bf16_logits = fast.forward(preprocess(image, IMAGENET_PREPROCESSING))[0]
    agree = fp32_logits.argmax(0) == bf16_logits.argmax(0)
    # bf16 keeps 8 mantissa bits (relative error <= 2^-8 per rounding, a few roundings deep here),
    # so only pixels whose top-2 logit gap is within a few percent of the logit scale may flip
    top2 = fp32_logits.topk(2, dim=0).values
    clear = (top2[0] - top2[1]) > 0.05 * fp32_logits.abs().max()
    assert clear.float().mean() > 0.8
    assert agree[clear].all()
    assert agree.float().mean() >= 0.98
    assert not torch.equal(fp32_logits, bf16_logits)  # bf16 really ran


def test_channels_last_gives_the_same_logits_in_fp32():
    net = _SmallConvNet().eval()
    image = preprocess(_image(32, 40, seed=9), IMAGENET_PREPROCESSING)
    contiguous = engine_of(net, _record(5)).forward(image)
    channels_last = engine_of(_SmallConvNet().eval(), _record(5), channels_last=True).forward(image)
    torch.testing.assert_close(channels_last, contiguous, atol=1e-4, rtol=1e-4)


def test_engine_runs_the_crf_its_options_name():
    from segcli import crf  # segcli's own module: a broken import fails, never skips

    pytest.importorskip("pydensecrf.densecrf")
    image = _image(24, 20, seed=12)
    plain = engine_of(_HalfResolutionNet(), _record()).predict(image, return_probabilities=True)
    assert plain.crf is None
    for method in ("fast", "full"):
        refined = engine_of(_HalfResolutionNet(), _record(), crf=crf.CRFSettings(method=method)).predict(
            image, return_probabilities=True)
        expected, run = crf.refine(plain.probabilities, image, crf.CRFParams(), method=method)
        np.testing.assert_allclose(refined.probabilities, expected, atol=1e-6)
        assert refined.crf == run.to_dict() and refined.crf["method"] == method
        assert refined.crf["iterations"] == (10 if method == "full" else 5)
        assert "crf" in refined.timings_ms
    # crf=None turns the options' CRF off for one call
    engine = engine_of(_HalfResolutionNet(), _record(), crf=crf.CRFSettings())
    assert engine.predict(image, crf=None).crf is None


def test_checkpoint_crf_defaults_apply_unless_the_user_overrides_them():
    from segcli import crf  # segcli's own module: a broken import fails, never skips

    pytest.importorskip("pydensecrf.densecrf")
    record = dataclasses.replace(_record(), crf_defaults=(("bilateral_xy", 30.0), ("iterations", 3)))
    given = crf.CRFSettings(given=(("gaussian_xy", 2.0),))
    engine = engine_of(_HalfResolutionNet(), record, crf=given)
    report = engine.predict(_image(24, 20, seed=13)).crf
    assert report["params"] == dataclasses.asdict(crf.CRFParams(bilateral_xy=30.0, iterations=3, gaussian_xy=2.0))
    assert report["iterations"] == 3
    overridden = crf.CRFSettings(given=(("bilateral_xy", 50.0), ("iterations", 8)))
    report = engine.predict(_image(24, 20, seed=13), crf=overridden).crf
    assert report["params"]["bilateral_xy"] == 50.0 and report["iterations"] == 8  # given: not capped at 5


def test_predict_takes_a_path_or_a_pil_image(tmp_path):
    from PIL import Image

    image = _image(20, 26, seed=14)
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    engine = engine_of(_HalfResolutionNet(), _record())
    expected = engine.predict(image).labels
    for given in (path, str(path), Image.fromarray(image)):
        np.testing.assert_array_equal(engine.predict(given).labels, expected)
    with pytest.raises(SegcliError, match="PIL image or an image file path"):
        engine.predict(42)


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "fcn8s", "fcn-resnet50", "deeplabv1", "deeplabv2", "deeplabv3-resnet50", "deeplabv3-mobilenet",
    "deeplabv3p-resnet50", "deeplabv3p-mobilenet", "lraspp",
])
def test_channels_last_does_not_change_zoo_models(name):
    from segcli.models import build_model

    torch.manual_seed(0)
    kwargs = {"width_mult": 0.25} if "mobilenet" in name or name == "lraspp" else {"width": 0.125}
    try:
        model = build_model(name, num_classes=3, **kwargs).eval()
    except SegcliError:
        model = build_model(name, num_classes=3).eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        contiguous = model(image)
        channels_last = model.to(memory_format=torch.channels_last)(image.contiguous(memory_format=torch.channels_last))
    assert channels_last.shape == (1, 3, 64, 64)
    # the same sums in another order: float32 rounding only, relative to the logit scale
    scale = contiguous.abs().max().item()
    assert (channels_last - contiguous).abs().max().item() <= 2e-4 * scale
    assert (channels_last.argmax(1) == contiguous.argmax(1)).float().mean() >= 0.999
