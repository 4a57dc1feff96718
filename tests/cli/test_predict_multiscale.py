"""`segcli predict` follows a checkpoint's multi-scale protocol; --no-multiscale runs one scale."""

from __future__ import annotations

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.cli.main import cli
from segcli.engine import preprocess
from segcli.models import build_model
from model_testing import randomize_batchnorm_stats
from robustness_support import CPU_FLAGS, WIDE_TERMINAL, random_rgb

CATEGORIES = ("background", "disc", "square", "ring")
KWARGS = (("depth", 50), ("width", 0.125))


def test_predict_fuses_the_records_scales_unless_told_not_to(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv2", len(CATEGORIES), **dict(KWARGS)).eval()
    randomize_batchnorm_stats(model)
    record = CheckpointRecord(name="msc", model="deeplabv2", dataset="test", categories=CATEGORIES,
                              filename="msc.safetensors", model_kwargs=KWARGS, input_scales=(0.5, 0.75, 1.0))
    weights = save_segcli_checkpoint(tmp_path / "msc.safetensors", model, record)
    image = random_rgb(48, 64, seed=3)
    Image.fromarray(image).save(tmp_path / "scene.png")
    reloaded = build_model("deeplabv2", len(CATEGORIES), **dict(KWARGS)).eval()
    reloaded.load_state_dict(model.state_dict())
    batch = preprocess(image, record.preprocessing)
    with torch.no_grad():
        single = reloaded(batch).argmax(1)[0].numpy()
        reloaded.input_scales = (0.5, 0.75, 1.0)
        fused = reloaded(batch).argmax(1)[0].numpy()
    assert (single != fused).mean() > 0.01

    for flag, expected, mark in (([], fused, "multi-scale 0.5/0.75/1"), (["--no-multiscale"], single, None)):
        out = tmp_path / f"out{len(flag)}"
        args = ["predict", str(tmp_path / "scene.png"), "--model", "deeplabv2", "--weights", str(weights),
                "--out", str(out), "--outputs", "label,json", *CPU_FLAGS, *flag]
        result = CliRunner().invoke(cli, args, env=WIDE_TERMINAL)
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(np.array(Image.open(out / "scene.png")), expected)
        assert (mark in result.output) if mark else ("multi-scale" not in result.output)
