"""`--crf-method`: the torch CRF from the command line, the CRF that ran in the per-image JSON, usage errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from robustness_support import assert_no_traceback, random_rgb, run_predict, save_image, save_tiny_checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


def test_crf_method_torch_runs_the_torch_crf_and_says_so(tmp_path, weights):
    image = save_image(Image.fromarray(random_rgb(30, 44)), tmp_path / "in" / "a.png")
    result = run_predict([image], tmp_path / "out", weights, "--crf", "--crf-method", "torch", "--crf-iters", "3")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "a.json").read_text())["crf"]
    assert (report["method"], report["iterations"], report["resolution"]) == ("torch", 3, [44, 30])
    assert "dense CRF in torch" in result.stderr


def test_without_pydensecrf_crf_runs_the_torch_crf(tmp_path, weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    image = save_image(Image.fromarray(random_rgb(20, 24)), tmp_path / "in" / "b.png")
    result = run_predict([image], tmp_path / "out", weights, "--crf", "--crf-iters", "2")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "b.json").read_text())["crf"]["method"] == "torch"
    assert "dense CRF in torch" in result.stderr  # the plan printed up front says so too
    full = run_predict([image], tmp_path / "out2", weights, "--crf", "--crf-full")
    assert full.exit_code == 1 and "segcli[crf]" in full.stderr and not (tmp_path / "out2" / "b.json").exists()
    assert_no_traceback(full)


@pytest.mark.parametrize("flags, message", [
    (["--crf-method", "torch"], "--crf-* options need --crf"),
    (["--crf", "--crf-full", "--crf-method", "torch"], "--crf-full and --crf-method torch disagree"),
    (["--crf", "--crf-method", "gpu"], "Invalid value for '--crf-method'"),
])
def test_crf_method_usage_errors(tmp_path, weights, flags, message):
    image = save_image(Image.fromarray(random_rgb(8, 8)), tmp_path / "in" / "c.png")
    result = run_predict([image], tmp_path / "out", weights, *flags)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
