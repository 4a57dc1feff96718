"""compare-upsampling takes an FCN's upsampling factor and crop offset from the model, not from a copy."""

from __future__ import annotations

import numpy as np
import torch

from engine_support import engine_of
from segcli.checkpoints.record import CheckpointRecord, Preprocessing
from segcli.engine import preprocess
from segcli.models import build_model
from segcli.upsampling.methods import TRAINING_FREE_METHODS, upsample_logits_with
from segcli.upsampling.runners import ZooLogitsRunner


def _runner(model) -> ZooLogitsRunner:
    record = CheckpointRecord(name="tiny", model="fcn16s", dataset="none", categories=("a", "b", "c"),
                              filename="x.safetensors", preprocessing=Preprocessing())
    return ZooLogitsRunner(engine_of(model, record), TRAINING_FREE_METHODS)


def test_runner_reads_the_models_geometry_and_reproduces_its_upsampling(monkeypatch) -> None:
    torch.manual_seed(0)
    model = build_model("fcn16s", 3, width=0.0625).eval()
    monkeypatch.setattr(type(model), "crop_offset", 25)  # a model that crops elsewhere: the runner follows it
    runner = _runner(model)
    assert runner.geometry == (16, 25)
    image = (np.random.default_rng(0).random((37, 45, 3)) * 255).astype(np.uint8)
    batch = preprocess(image, runner.engine.record.preprocessing)
    with torch.no_grad():
        low, full = model.low_res_logits(batch), model(batch)
        torch.testing.assert_close(upsample_logits_with("transposed-fixed", low, (37, 45), runner.geometry), full)


def test_models_whose_logits_span_the_image_have_no_geometry() -> None:
    model = build_model("deeplabv1", 3, width=0.0625).eval()
    assert _runner(model).geometry is None
