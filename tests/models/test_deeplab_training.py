"""Reduced-width DeepLab v1/v2 (the sizes segcli ships) train a few steps from the CLI, save and load back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from segcli.checkpoints.loading import read_segcli_metadata
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.engine import SegmentationEngine
from segcli.inference_options import InferenceOptions
from segcli.models import build_model

SHIPPED_SIZES = {  # model -> --model-kwarg values recommended for the small shipped checkpoints
    "deeplabv1": ("width=0.25",),                # 1,284,057 parameters at 9 classes, 2.6 MB in fp16
    "deeplabv2": ("width=0.1875", "depth=50"),   # 960,432 parameters at 9 classes, 1.9 MB in fp16
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synth_dataset(root, 6, seed=5, size=(48, 48), val_fraction=0.34)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(SHIPPED_SIZES))
def test_small_deeplab_trains_saves_and_loads(scenes, tmp_path, model) -> None:
    out = tmp_path / f"{model}.safetensors"
    kwargs = [part for value in SHIPPED_SIZES[model] for part in ("--model-kwarg", value)]
    args = ["train", "--model", model, "--data", str(scenes), "--out", str(out), "--batch-size", "2", "--iters", "3",
            *kwargs, "--device", "cpu", "--precision", "fp32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    record = read_segcli_metadata(out).record
    expected = {key: float(value) if "." in value else int(value)
                for key, value in (item.split("=") for item in SHIPPED_SIZES[model])}
    assert record.kwargs == expected and record.num_classes == len(SYNTH_CLASSES)
    assert out.stat().st_size < 3.0e6  # fp16: within the 3 MB aimed at per shipped DeepLab
    engine = SegmentationEngine.load(model, weights=str(out), device="cpu", options=InferenceOptions(precision="fp32"))
    trained = engine.model.state_dict()
    fresh = build_model(model, len(SYNTH_CLASSES), **expected).state_dict()
    assert trained.keys() == fresh.keys()
    image = np.random.default_rng(0).integers(0, 256, size=(40, 52, 3), dtype=np.uint8)
    labels = engine.predict(image).labels
    assert labels.shape == (40, 52) and labels.max() < len(SYNTH_CLASSES)
    assert any(not torch.equal(trained[key].float(), fresh[key].float()) for key in trained)
