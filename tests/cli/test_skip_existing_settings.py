"""`predict --skip-existing` keeps a set only when its JSON summary says this run made it: the same checkpoint
and the same options the labels depend on; a set of another checkpoint or other settings is refused
(naming --overwrite), never kept under this run's name and never replaced silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from robustness_support import files_under, random_rgb, run_predict, save_image, save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("two-checkpoints")
    return save_tiny_checkpoint(folder / "first.safetensors"), save_tiny_checkpoint(folder / "second.safetensors")


@pytest.fixture
def earlier_run(tmp_path, checkpoints) -> tuple[Path, Path, dict[str, bytes]]:
    """A folder of two images, segmented with the first checkpoint: (inputs, out, the bytes of every output)."""
    inputs = tmp_path / "in"
    for index in range(2):
        save_image(Image.fromarray(random_rgb(24, 32, index)), inputs / f"p{index}.png")
    out = tmp_path / "out"
    result = run_predict([inputs], out, checkpoints[0])
    assert result.exit_code == 0, result.stderr
    return inputs, out, {name: (out / name).read_bytes() for name in files_under(out)}


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_same_checkpoint_and_settings_are_skipped(earlier_run, checkpoints):
    inputs, out, before = earlier_run
    result = run_predict([inputs], out, checkpoints[0], "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert _last_line(result.stderr).startswith("0 segmented, 2 skipped")
    assert json.loads((out / "p0.json").read_text())["settings"]["tta"] is False


def test_sets_of_another_checkpoint_are_refused_not_kept(earlier_run, checkpoints):
    inputs, out, before = earlier_run
    result = run_predict([inputs], out, checkpoints[1], "--skip-existing")
    assert result.exit_code == 1, result.stderr
    line = _last_line(result.stderr)
    assert line.startswith(f"Error: {out} holds the outputs of 2 images made with another checkpoint or other settings")
    assert "checkpoint first" in line and "this run second" in line and "pass --overwrite" in line
    assert {name: (out / name).read_bytes() for name in files_under(out)} == before
    replaced = run_predict([inputs], out, checkpoints[1], "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    assert json.loads((out / "p0.json").read_text())["checkpoint"] == "second"


@pytest.mark.parametrize("option", [["--tta"], ["--tile", "32"], ["--no-multiscale"], ["--alpha", "0.9"]])
def test_sets_made_with_other_settings_are_refused(earlier_run, checkpoints, option):
    inputs, out, before = earlier_run
    result = run_predict([inputs], out, checkpoints[0], "--skip-existing", *option)
    assert result.exit_code == 1, result.stderr
    assert "made with another checkpoint or other settings" in result.stderr
    assert {name: (out / name).read_bytes() for name in files_under(out)} == before
