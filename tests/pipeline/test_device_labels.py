"""A folder run's label PNGs hold the argmax of the model's logits, computed here on the host, image by image,
whatever the schedule (labels are now taken on the model's device and only they are copied back)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from robustness_support import tiny_record
from segcli.device import plan_execution
from segcli.engine import SegmentationEngine, preprocess, upsample_logits
from segcli.inputs import find_images
from segcli.outputs.plan import OutputOptions
from segcli.pipeline.run import FolderRun
from segcli.pipeline.scheduler import Schedule


def _colour_model() -> torch.nn.Module:
    """Logits = the normalised colour channels (a 1x1 identity convolution): labels that vary with the image."""
    model = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        model.bias.zero_()
    return model


def _host_labels(engine: SegmentationEngine, rgb: np.ndarray) -> np.ndarray:
    """The path before: float logits to the host, argmax per image there."""
    with torch.inference_mode():
        logits = engine.model(preprocess(rgb, engine.record.preprocessing))
    return upsample_logits(logits, rgb.shape[:2]).cpu()[0].argmax(0).numpy().astype(np.uint8)


@pytest.mark.parametrize("schedule", [Schedule(1, 0), Schedule(3, 2), Schedule(lanes=2, torch_threads=1)])
def test_label_pngs_equal_the_host_argmax_of_the_logits(tmp_path, schedule):
    folder = tmp_path / "in"
    folder.mkdir()
    images = {}
    for index in range(5):
        size = (40, 52) if index >= 3 else (36, 36)  # a batch of three, then one of two
        rgb = np.random.default_rng(index).integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"{index}.png")
        images[f"{index}.png"] = rgb
    engine = SegmentationEngine(_colour_model(), tiny_record(), plan_execution("cpu", "fp32", channels_last=False))
    summary = FolderRun(OutputOptions(tmp_path / "out", write_overlay=False), find_images([folder])).execute(
        engine, schedule=schedule)
    assert len(summary.written) == 5
    for name, rgb in images.items():
        written = np.asarray(Image.open(tmp_path / "out" / name))
        expected = _host_labels(engine, rgb)
        assert len(np.unique(expected)) == 3  # every class present: a mix-up would show
        np.testing.assert_array_equal(written, expected)
