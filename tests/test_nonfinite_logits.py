"""A checkpoint whose logits are NaN or inf is an error (it was "background 100%", exit 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from robustness_support import (TINY_CATEGORIES, WIDE_TERMINAL, assert_no_traceback, files_under, random_rgb,
                                run_predict, save_image, tiny_model, tiny_record)
from segcli.errors import ModelOutputError


def _poisoned(value: float):
    """The tiny model with one `value` in its last classifier weight (NaN or inf reaches every logit)."""
    model = tiny_model()
    last = [name for name, _ in model.named_parameters() if name.endswith("weight")][-1]
    with torch.no_grad():
        model.get_parameter(last).view(-1)[0] = value
    return model


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_engine_refuses_non_finite_logits_naming_the_checkpoint(value):
    from engine_support import engine_of

    engine = engine_of(_poisoned(value), tiny_record("poisoned"))
    with pytest.raises(ModelOutputError, match=r"checkpoint poisoned produced non-finite logits \(NaN or inf\)"):
        engine.predict(random_rgb(40, 48))
    # the same model without the poison predicts (the check does not fire on finite logits)
    healthy = engine_of(tiny_model(), tiny_record("healthy"))
    assert healthy.predict(random_rgb(40, 48)).labels.shape == (40, 48)


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory) -> Path:
    from segcli.checkpoints.saving import save_segcli_checkpoint

    path = tmp_path_factory.mktemp("nan") / "nan-weights.safetensors"
    return save_segcli_checkpoint(path, _poisoned(float("nan")), tiny_record(path.stem))


def test_predict_with_nan_weights_is_one_error_line_and_no_outputs(nan_checkpoint, tmp_path):
    images = [save_image(Image.fromarray(random_rgb(24, 32, seed)), tmp_path / "in" / f"{seed}.png")
              for seed in range(3)]
    result = run_predict([tmp_path / "in"], tmp_path / "out", nan_checkpoint)
    assert result.exit_code == 1
    assert_no_traceback(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "nan-weights" in errors[0] and "non-finite logits" in errors[0], result.stderr
    assert not [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert files_under(tmp_path / "out") == set() and len(images) == 3


def test_evaluate_with_nan_weights_reports_no_scores(nan_checkpoint, tmp_path):
    from segcli.cli.main import cli

    data = tmp_path / "voc"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (data / sub).mkdir(parents=True)
    Image.fromarray(random_rgb(24, 32)).save(data / "JPEGImages" / "scene.png")
    Image.fromarray(np.zeros((24, 32), np.uint8), "L").save(data / "SegmentationClass" / "scene.png")
    (data / "ImageSets" / "Segmentation" / "val.txt").write_text("scene\n")
    (data / "classes.txt").write_text("\n".join(TINY_CATEGORIES) + "\n")
    result = CliRunner().invoke(cli, ["evaluate", "--model", "lraspp", "--weights", str(nan_checkpoint),
                                      "--data", str(data), "--json", str(tmp_path / "scores.json"),
                                      "--device", "cpu", "--precision", "fp32"], env=WIDE_TERMINAL)
    assert result.exit_code == 1, result.output
    assert_no_traceback(result)
    assert "non-finite logits" in result.output and "miou" not in result.output.lower()
    assert not (tmp_path / "scores.json").exists()


def test_all_finite_is_exact_when_the_fast_sum_overflows():
    from segcli.model_output import all_finite

    huge = torch.full((2, 3, 4, 4), 3e38)  # finite, but their float32 sum is inf
    assert all_finite(huge) and all_finite(torch.zeros(1, 2, 3, 3))
    for bad in (float("nan"), float("inf"), float("-inf")):
        poisoned = huge.clone()
        poisoned[1, 2, 3, 3] = bad
        assert not all_finite(poisoned)
        assert not all_finite(torch.zeros(1, 2, 3, 3).index_fill_(3, torch.tensor([1]), bad))


def test_in_reduced_precision_the_error_suggests_fp32():
    from engine_support import engine_of

    engine = engine_of(_poisoned(float("inf")), tiny_record("poisoned"), precision="bf16")
    with pytest.raises(ModelOutputError, match=r"overflow in reduced precision: try fp32 precision$") as caught:
        engine.predict(random_rgb(40, 48))
    assert caught.value.hint == "try --precision fp32"
