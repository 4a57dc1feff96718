"""The shipped-on-synthetic-scenes warning reaches every user of such a checkpoint:
the CLI with and without -q, given by name or by path, compare-upsampling --model, the per-image
JSON `note`, and the Python API (warnings.warn)."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import pytest
from click.testing import CliRunner
from PIL import Image

from robustness_support import random_rgb, save_image
from segcli.checkpoints.manifest import find_record, shipped_weights_dir
from segcli.checkpoints.resolve import synthetic_scenes_warning
from segcli.cli.main import cli
from segcli.errors import SyntheticScenesWarning, with_hint
from schema_support import assert_valid_summary

CPU = ("--device", "cpu", "--precision", "fp32")
EXPECTED_START = "Warning: lraspp-mobilenet-synth was trained only on segcli's synthetic scenes"


@pytest.fixture
def image(tmp_path):
    return save_image(Image.fromarray(random_rgb(40, 48, 3)), tmp_path / "in" / "photo.png")


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def test_the_decision_is_one_function():
    synth = find_record("lraspp-mobilenet-synth")
    warning = synthetic_scenes_warning(synth)
    assert isinstance(warning, SyntheticScenesWarning)
    assert str(warning).startswith("lraspp-mobilenet-synth was trained only on segcli's synthetic scenes")
    assert "lraspp-coco" in str(warning)  # the published checkpoint for the same model
    assert warning.hint == "fetch it with segcli weights pull lraspp-coco"  # how, on the command line
    assert synthetic_scenes_warning(find_record("lraspp-coco")) is None
    fcn = synthetic_scenes_warning(find_record("fcn8s-synth"))
    assert "fcn8s-voc-caffe" in str(fcn)  # no public download: says where the published file goes


def test_the_warning_names_flags_only_in_its_hint():
    """Python callers read library terms; `--weights FILE` is the command line's, in the hint."""
    lonely = dataclasses.replace(find_record("lraspp-mobilenet-synth"), model="no-zoo-model")  # nothing published
    warning = synthetic_scenes_warning(lonely)
    assert "--" not in str(warning) and "weights trained on photographs" in str(warning)
    assert warning.hint == "pass --weights FILE"
    assert with_hint(warning) == f"{warning}; pass --weights FILE"


def _warning_lines(stderr: str) -> list[str]:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stderr)  # colours (the runs below keep them to check for dim)
    return [line for line in plain.splitlines() if line.startswith("Warning: ")]


@pytest.mark.parametrize("quiet", [False, True])
def test_predict_warns_by_name_and_by_path_even_with_quiet(image, tmp_path, quiet):
    shipped_file = shipped_weights_dir() / "lraspp-mobilenet-synth.safetensors"
    for weights in ("lraspp-mobilenet-synth", str(shipped_file)):
        out = tmp_path / f"out-{quiet}-{len(weights)}"
        args = ["predict", str(image), "--model", "lraspp", "--weights", weights, "--out", str(out), *CPU]
        result = CliRunner().invoke(cli, args + (["-q"] if quiet else []), env={"COLUMNS": "300"}, color=True)
        assert result.exit_code == 0, result.stderr
        lines = _warning_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith(EXPECTED_START), result.stderr
        assert "\x1b[2m" not in result.stderr  # not dim
        summary = json.loads((out / "photo.json").read_text())
        assert_valid_summary(summary)
        warning = synthetic_scenes_warning(find_record("lraspp-mobilenet-synth"))
        assert lines[0] == f"Warning: {warning}; fetch it with segcli weights pull lraspp-coco"
        assert summary["note"] == str(warning)  # the file records the library's words, not a command line


def test_published_checkpoints_and_own_files_get_no_warning(tmp_path, image, tiny_checkpoint):
    result = CliRunner().invoke(cli, ["predict", str(image), "--model", "lraspp", "--weights", str(tiny_checkpoint),
                                      "--out", str(tmp_path / "out"), *CPU])
    assert result.exit_code == 0 and _warning_lines(result.stderr) == []
    assert json.loads((tmp_path / "out" / "photo.json").read_text())["note"] is None


@pytest.mark.slow
def test_compare_upsampling_with_a_synthetic_model_warns(image, tmp_path):
    result = CliRunner().invoke(cli, ["compare-upsampling", str(image.parent), "--model", "lraspp", "--out",
                                      str(tmp_path / "up"), "-q", *CPU])
    assert result.exit_code == 0, result.output
    lines = _warning_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(EXPECTED_START)


def test_python_api_warns():
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions

    with pytest.warns(SyntheticScenesWarning, match="lraspp-mobilenet-synth was trained only on segcli's synthetic") \
            as caught:
        engine = SegmentationEngine.load("lraspp", device="cpu", options=InferenceOptions(precision="fp32"))
    assert engine.record.name == "lraspp-mobilenet-synth"
    shown = [str(item.message) for item in caught]
    assert shown and all("segcli weights pull" not in text and "--" not in text for text in shown)


def test_python_api_is_silent_for_other_checkpoints(tiny_checkpoint):
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        SegmentationEngine.load("lraspp", str(tiny_checkpoint), device="cpu",
                                options=InferenceOptions(precision="fp32"))
