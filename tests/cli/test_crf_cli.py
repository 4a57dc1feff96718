"""--crf on every command: the CRF that ran is reported, --crf-iters is honoured, usage errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import segcli.crf
from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.models import build_model
from robustness_support import assert_no_traceback, random_rgb, run_predict, save_image, save_tiny_checkpoint

pytest.importorskip("pydensecrf.densecrf")
CPU = ["--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


@pytest.fixture
def crf_calls(monkeypatch) -> list:
    """Every CRF the engine runs: (kernel settings, method, whether the iterations were given, what ran)."""
    calls, real = [], segcli.crf.refine

    def spy(probabilities, image, params, **kwargs):
        refined, run = real(probabilities, image, params, **kwargs)
        calls.append((params, kwargs, run))
        return refined, run

    monkeypatch.setattr(segcli.crf, "refine", spy)
    return calls


@pytest.mark.parametrize("flags, method, iterations, resolution", [
    ([], "fast", 5, [135, 130]),                    # capped at 5 (not given), at half size
    (["--crf-iters", "8"], "fast", 8, [135, 130]),  # given: honoured, not capped
    (["--crf-full"], "full", 10, [270, 260]),       # the reference: every iteration, full size
])
def test_predict_json_and_terminal_report_the_crf_that_ran(tmp_path, flags, method, iterations, resolution):
    """The shipped deeplabv3p on a synthetic scene: a confident map, so the fast CRF takes its two scales."""
    from segcli.data.synth import make_scene

    image = save_image(Image.fromarray(make_scene(3, 0, (260, 270)).image), tmp_path / "in" / "scene.png")
    result = CliRunner().invoke(cli, ["predict", str(image), "--model", "deeplabv3p", "--out", str(tmp_path / "out"),
                                      "--crf", *flags, *CPU], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "scene.json").read_text())["crf"]
    assert (report["method"], report["iterations"], report["resolution"]) == (method, iterations, resolution)
    assert report["labels_total"] == 9 and set(report["labels_kept"]) <= set(range(9)) and report["labels_kept"]
    assert report["params"]["bilateral_xy"] == 67.0 and report["params"]["iterations"] == (8 if flags[1:] == ["8"] else 10)
    assert report["band_iterations"] in ((0, 2) if method == "fast" else (0,)) and 0 <= report["band_fraction"] <= 1
    assert f"{method if method == 'fast' else 'reference'} dense CRF: {iterations} iterations" in result.stderr


def test_help_shows_the_real_crf_defaults():
    for command in ("predict", "evaluate", "benchmark"):
        text = " ".join(CliRunner().invoke(cli, [command, "--help"], env={"COLUMNS": "200"}).output.split())
        assert "else 10 (DeepLab v2); the fast CRF stops at 5 when this is not given" in text, command
        assert "--crf-full" in text and "segcli[crf]" in text


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("crf-eval")
    write_synth_dataset(root / "data", 2, seed=5, size=(40, 40), val_fraction=0.5)
    torch.manual_seed(0)
    record = CheckpointRecord(name="tiny", model="deeplabv1", dataset="segcli-synth", categories=SYNTH_CLASSES,
                              filename="tiny.safetensors", model_kwargs=(("width", 0.0625),))
    model = build_model("deeplabv1", len(SYNTH_CLASSES), width=0.0625)
    return root / "data", save_segcli_checkpoint(root / "tiny.safetensors", model, record)


@pytest.mark.parametrize("flags, iterations", [([], 5), (["--crf-iters", "7"], 7)])
def test_evaluate_honours_crf_iters_and_reports_them(synth_folder, tmp_path, crf_calls, flags, iterations):
    data, checkpoint = synth_folder
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(cli, ["evaluate", "--model", "deeplabv1", "--weights", str(checkpoint), "--data",
                                      str(data), "--json", str(out), "--crf", *flags, *CPU])
    assert result.exit_code == 0, result.output
    assert crf_calls and all(run.iterations == iterations for _, _, run in crf_calls)
    assert all(kwargs["iterations_given"] == bool(flags) for _, kwargs, _ in crf_calls)
    reported = json.loads(out.read_text())["crf"]
    assert reported["iterations"] == iterations and reported["method"] == "fast"
    assert f"fast dense CRF: {iterations} iterations" in result.output


def test_benchmark_honours_crf_iters(tmp_path, crf_calls, monkeypatch):
    import segcli.benchmarking.subjects as subjects

    monkeypatch.setattr(subjects, "_resolve_on_disk", lambda name: None)  # random weights, no checkpoint needed
    result = CliRunner().invoke(cli, ["benchmark", "--models", "lraspp", "--sizes", "64", "--warmup", "0",
                                      "--iters", "1", "--e2e-iters", "1", "--no-baseline", "--crf", "--crf-iters",
                                      "7", "--json", str(tmp_path / "b.json"), *CPU])
    assert result.exit_code == 0, result.output
    assert crf_calls and all(run.iterations == 7 and kwargs["iterations_given"] for _, kwargs, run in crf_calls)
    assert json.loads((tmp_path / "b.json").read_text())["settings"]["crf"]["given"] == {"iterations": 7}


# --- usage errors and tiny images ------------------------------------------------------------

def test_tile_below_the_minimum_is_a_usage_error(tmp_path, weights):
    image = save_image(Image.fromarray(random_rgb(16, 16)), tmp_path / "in" / "a.png")
    result = run_predict([image], tmp_path / "out", weights, "--tile", "7")
    assert result.exit_code == 2 and "Invalid value for '--tile'" in result.stderr and "at least" in result.stderr
    assert_no_traceback(result)


def test_tiny_images_with_tta_through_deeplabv3p_are_segmented_and_the_folder_goes_on(tmp_path):
    """1-2 px images and a 3x5 one (which TTA scales down to 2x4) used to crash DeepLab v3+'s forward."""
    sizes = {"one": (1, 1), "two": (2, 2), "three_by_five": (3, 5), "normal": (40, 48)}
    for index, (name, (height, width)) in enumerate(sizes.items()):
        save_image(Image.fromarray(random_rgb(height, width, seed=index)), tmp_path / "in" / f"{name}.png")
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "in"), "--model", "deeplabv3p",
                                      "--tta", "--out", str(tmp_path / "out"), *CPU])
    assert result.exit_code == 0, result.stderr
    assert_no_traceback(result)
    for name, (height, width) in sizes.items():
        with Image.open(tmp_path / "out" / f"{name}.png") as label:
            assert label.size == (width, height)
    assert "4 segmented" in result.stderr


def test_after_the_run_one_line_says_what_the_crf_ran(tmp_path, weights):
    """Images under 256 px a side run the fast CRF at full size without band updates: the closing
    line counts the images the CRF ran on and claims no band updates where none ran (JSON `crf`)."""
    for index in range(2):
        save_image(Image.fromarray(random_rgb(48, 64, index)), tmp_path / "in" / f"small{index}.png")
    result = run_predict([tmp_path / "in"], tmp_path / "out", weights, "--crf")
    assert result.exit_code == 0, result.stderr
    bands = [json.loads((tmp_path / "out" / f"small{index}.json").read_text())["crf"]["band_iterations"]
             for index in range(2)]
    assert bands == [0, 0]
    lines = [line for line in result.stderr.splitlines() if line.startswith("dense CRF ran on")]
    assert lines == ["dense CRF ran on 2 images (no full-size band updates)"], result.stderr
