"""The exported module in eager torch: the engine's preprocessing and outputs, inside one forward."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import resize

from engine_support import engine_of
from robustness_support import random_rgb, tiny_model, tiny_record
from segcli.checkpoints.record import CAFFE_PREPROCESSING, TORCHVISION_PREPROCESSING, Preprocessing
from segcli.export.graph import SegmentationGraph, resized_input_size


@pytest.mark.parametrize("height,width", [(64, 64), (48, 80), (80, 48), (37, 101), (520, 700), (700, 519)])
def test_resized_input_size_is_torchvisions(height, width):
    shape = resize(torch.zeros(1, 3, height, width), [52], antialias=True).shape[-2:]
    assert resized_input_size(height, width, 52) == tuple(shape)


def _smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """Blocks of colour plus noise: logits with clear winners, not near-ties everywhere."""
    coarse = random_rgb(max(2, height // 8), max(2, width // 8), seed).repeat(8, 0).repeat(8, 1)[:height, :width]
    noise = np.random.default_rng(seed).integers(-10, 11, size=coarse.shape)
    return np.clip(coarse.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("preprocessing", [
    Preprocessing(),
    CAFFE_PREPROCESSING,  # BGR, 0..255, mean only
    dataclasses.replace(TORCHVISION_PREPROCESSING, resize_shorter=40),  # resize down and logits back up
    dataclasses.replace(TORCHVISION_PREPROCESSING, resize_shorter=72),  # resize up
], ids=["imagenet", "caffe-bgr", "resize-down", "resize-up"])
@pytest.mark.slow
def test_graph_gives_the_engines_fp32_prediction(preprocessing):
    model = tiny_model()
    record = dataclasses.replace(tiny_record(), preprocessing=preprocessing)
    engine = engine_of(model, record)
    graph = SegmentationGraph(model, preprocessing)
    images = [_smooth_image(56, 64, seed) for seed in (1, 2)]
    with torch.inference_mode():
        labels, logits = graph(torch.from_numpy(np.stack(images)))
    assert labels.dtype == torch.int64 and tuple(labels.shape) == (2, 56, 64)
    assert logits.dtype == torch.float32 and tuple(logits.shape) == (2, 3, 56, 64)
    for index, image in enumerate(images):
        expected = engine.predict(image, return_probabilities=True)
        probabilities = torch.softmax(logits[index], 0).numpy()
        # resizing rounds pixels in float here and in uint8 in torchvision: a level on a few pixels
        tolerance = 2e-3 if preprocessing.resize_shorter else 1e-5
        np.testing.assert_allclose(probabilities, expected.probabilities, atol=tolerance)
        assert (labels[index].numpy() == expected.labels).mean() >= 0.995


def test_graph_flips_channels_for_bgr_checkpoints():
    model = tiny_model()
    image = _smooth_image(40, 40, 3)
    bgr_graph = SegmentationGraph(model, CAFFE_PREPROCESSING)
    rgb_twin = SegmentationGraph(model, dataclasses.replace(CAFFE_PREPROCESSING, channel_order="RGB"))
    with torch.inference_mode():
        _, from_bgr = bgr_graph(torch.from_numpy(image[None]))
        _, from_flipped = rgb_twin(torch.from_numpy(np.ascontiguousarray(image[None, :, :, ::-1])))
    torch.testing.assert_close(from_bgr, from_flipped)
