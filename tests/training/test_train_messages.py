"""What `segcli train` says while and after it runs: the loss from the first iteration, the
BatchNorm recompute as a timed stage, and the state file it keeps."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from segcli.cli.main import cli
from segcli.data.synth import write_synth_dataset
from segcli.training.progress import TrainingProgress

TINY = ["--model-kwarg", "width=0.0625", "--device", "cpu", "--precision", "fp32", "--batch-size", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("messages")
    write_synth_dataset(root, 7, seed=2, size=(32, 32), val_fraction=0.0)  # 7 training images
    return root


def _train(data: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(out), *TINY, *extra],
                              env={"COLUMNS": "300"})


def test_the_loss_is_shown_from_the_first_iteration(data, tmp_path):
    result = _train(data, tmp_path / "m.safetensors", "--model", "deeplabv1", "--iters", "3")
    assert result.exit_code == 0, result.output
    first = re.search(r"^iter 1/3 loss (\S+)", result.output, re.MULTILINE)
    assert first is not None, result.output
    assert math.isfinite(float(first.group(1)))


def test_the_progress_bar_shows_a_dash_until_the_first_loss():
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    with TrainingProgress(console, total=10, start=0) as progress:
        console.print(progress.bar.get_renderable())
        before = console.file.getvalue()
        progress(1, 10, 1e-3, 0.5)
        console.print(progress.bar.get_renderable())
    assert "nan" not in before and "loss -" in before
    assert "loss 0.5000" in console.file.getvalue()


def test_batchnorm_recompute_is_a_timed_stage_over_one_pass_at_most(data, tmp_path):
    result = _train(data, tmp_path / "m.safetensors", "--model", "deeplabv2", "--model-kwarg", "depth=50", "--iters", "2")
    assert result.exit_code == 0, result.output
    line = re.search(r"BatchNorm statistics recomputed .* over (\d+) batches \((\d+) images\) in [\d.]+ s",
                     result.output)
    assert line is not None, result.output
    assert int(line.group(1)) == 7 // 2 and int(line.group(2)) == 2 * (7 // 2)  # one pass, not 50 batches


def test_an_explicit_bn_batches_is_honoured_up_to_one_pass(data, tmp_path):
    result = _train(data, tmp_path / "m.safetensors", "--model", "deeplabv2", "--model-kwarg", "depth=50", "--iters", "1",
                    "--bn-batches", "2")
    assert result.exit_code == 0, result.output
    assert re.search(r"over 2 batches \(4 images\)", result.output), result.output


def test_after_a_run_it_says_where_the_state_file_is_and_that_it_can_go(data, tmp_path):
    out = tmp_path / "m.safetensors"
    result = _train(data, out, "--model", "deeplabv1", "--iters", "2")
    assert result.exit_code == 0, result.output
    state = Path(f"{out}.state.pt")
    assert state.is_file()
    said = " ".join(result.output.split())
    assert f"state kept in {state}" in said and "delete it" in said, result.output
