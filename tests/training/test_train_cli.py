"""`segcli train` as a user meets it: batch 1, Ctrl-C/SIGTERM, an existing --out, its messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from segcli.checkpoints.loading import read_segcli_metadata
from segcli.cli.main import cli
from segcli.data.synth import write_synth_dataset

TINY = ["--model-kwarg", "width=0.0625", "--device", "cpu", "--precision", "fp32", "--batch-size", "2"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth-cli")
    write_synth_dataset(root, 7, seed=5, size=(40, 40), val_fraction=0.15)  # 6 train scenes, 1 val
    return root


def test_an_empty_val_split_skips_validation_instead_of_failing_at_the_end(tmp_path):
    data = tmp_path / "no-val"
    write_synth_dataset(data, 4, seed=5, size=(40, 40), val_fraction=0.0)  # val.txt exists, lists nothing
    out = tmp_path / "no-val.safetensors"
    result = invoke("--model", "deeplabv1", "--data", str(data), "--out", str(out), "--iters", "1", *TINY)
    assert result.exit_code == 0, result.output
    assert read_segcli_metadata(out).extra["iterations"] == 1


def invoke(*args: str):
    return CliRunner().invoke(cli, ["train", *args])


def test_batch_one_is_a_usage_error_for_batchnorm_after_global_pooling(tiny_data, tmp_path):
    out = tmp_path / "v3p.safetensors"
    result = invoke("--model", "deeplabv3p", "--data", str(tiny_data), "--out", str(out), "--batch-size", "1",
                    "--iters", "1", "--device", "cpu", "--precision", "fp32")
    assert result.exit_code == 2, result.output
    assert "--batch" in result.output and "--batch-size 2 or more" in result.output
    assert "Traceback" not in result.output and not out.exists()
    assert not Path(f"{out}.state.pt").exists()
    # a model whose BatchNorm layers all see many values per channel trains with batch 1
    fine = invoke("--model", "deeplabv1", "--data", str(tiny_data), "--out", str(tmp_path / "v1.safetensors"),
                  "--iters", "1", *TINY[:-2], "--batch-size", "1")
    assert fine.exit_code == 0, fine.output


def test_existing_out_is_kept_without_overwrite_and_the_state_file_is_named(tiny_data, tmp_path):
    out = tmp_path / "kept.safetensors"
    out.write_bytes(b"the user's own file")
    args = ["--model", "deeplabv1", "--data", str(tiny_data), "--out", str(out), "--iters", "1", *TINY]
    refused = invoke(*args)
    assert refused.exit_code == 1
    assert "already exists" in refused.output and "--overwrite" in refused.output
    assert out.read_bytes() == b"the user's own file"
    replaced = invoke(*args, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert read_segcli_metadata(out).record.model == "deeplabv1"
    assert f"resumable state: {out}.state.pt" in replaced.output


def test_an_earlier_runs_state_file_is_not_replaced_silently(tiny_data, tmp_path):
    out = tmp_path / "run.safetensors"
    state = Path(f"{out}.state.pt")
    state.write_bytes(b"an interrupted run")
    result = invoke("--model", "deeplabv1", "--data", str(tiny_data), "--out", str(out), "--iters", "1", *TINY)
    assert result.exit_code == 1 and f"--resume {state}" in result.output
    assert state.read_bytes() == b"an interrupted run"


def test_start_message_names_builder_options(tiny_data, tmp_path):
    with_kwargs = invoke("--model", "deeplabv1", "--data", str(tiny_data), "--out", str(tmp_path / "a.safetensors"),
                         "--iters", "1", *TINY)
    assert with_kwargs.exit_code == 0, with_kwargs.output
    assert "training deeplabv1 (width=0.0625) on 6 images, 1 iterations" in with_kwargs.output


def test_interrupt_after_the_last_iteration_then_resume_writes_the_checkpoint(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "late.safetensors"
    args = ["--model", "deeplabv1", "--data", str(tiny_data), "--out", str(out), "--iters", "3", *TINY]

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("segcli.training.run.recalibrate_batch_norm", interrupted)
        first = invoke(*args)
    assert first.exit_code == 130, first.output
    state = Path(f"{out}.state.pt")
    assert "after the last iteration (3/3)" in first.output and f"--resume {state}" in first.output
    assert not out.exists() and torch.load(state, weights_only=True)["iteration"] == 3
    resumed = invoke(*args, "--resume", str(state))
    assert resumed.exit_code == 0, resumed.output
    assert read_segcli_metadata(out).extra["iterations"] == 3


def test_resuming_a_finished_state_writes_its_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "done.safetensors"
    args = ["--model", "deeplabv1", "--data", str(tiny_data), "--out", str(out), "--iters", "2", *TINY]
    assert invoke(*args).exit_code == 0
    out.unlink()  # as if the run had been stopped while writing it
    resumed = invoke(*args, "--resume", f"{out}.state.pt")
    assert resumed.exit_code == 0, resumed.output
    assert "no iterations left" in resumed.output
    assert read_segcli_metadata(out).extra["iterations"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_the_state_exits_130_and_resume_continues(tiny_data, tmp_path, stop_signal):
    out = tmp_path / "stopped.safetensors"
    state = Path(f"{out}.state.pt")
    args = [sys.executable, "-m", "segcli", "train", "--model", "deeplabv1", "--data", str(tiny_data),
            "--out", str(out), "--save-every", "1", *TINY]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    process = subprocess.Popen(args + ["--iters", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, text=True)
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--resume {state}" in lines[0] and "Traceback" not in stderr
    reached = torch.load(state, weights_only=True)["iteration"]
    assert 1 <= reached < 100000 and f"iteration {reached}/100000" in lines[0]
    resumed = subprocess.run(args + ["--iters", str(reached + 2), "--resume", str(state)], capture_output=True,
                             env=env, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert read_segcli_metadata(out).extra["iterations"] == reached + 2


@pytest.fixture
def no_training(monkeypatch):
    import segcli.training.run as run

    def refuse(*args, **kwargs):
        raise AssertionError("training started before --out was checked")

    monkeypatch.setattr(run, "fit", refuse)
    monkeypatch.setattr(run, "starting_engine", refuse)


def test_out_under_a_regular_file_is_refused_before_training(tiny_data, tmp_path, no_training):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "m.safetensors"
    result = invoke("--model", "deeplabv1", "--data", str(tiny_data), "--out", str(out), "--iters", "1", *TINY)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: cannot write {out}: {blocker} is a file, not a folder; choose another --out"]


def test_out_in_a_folder_no_file_can_be_made_in_is_refused_before_training(tiny_data, tmp_path, no_training,
                                                                         monkeypatch):
    import segcli.outputs.report_file as report_file

    def read_only(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(report_file, "create_temporary", read_only)  # as in a folder without write permission
    out = tmp_path / "m.safetensors"
    result = invoke("--model", "deeplabv1", "--data", str(tiny_data), "--out", str(out), "--iters", "1", *TINY)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: cannot write {out}: Permission denied; choose another --out"]


def test_out_that_is_the_starting_checkpoint_is_refused_even_with_overwrite(tiny_data, tmp_path, no_training):
    from robustness_support import save_tiny_checkpoint

    weights = save_tiny_checkpoint(tmp_path / "start.safetensors")
    before = weights.read_bytes()
    result = invoke("--model", "lraspp", "--data", str(tiny_data), "--weights", str(weights), "--out", str(weights),
                    "--overwrite", "--iters", "1", *TINY)
    assert result.exit_code == 1 and "is an input of this run" in result.output, result.output
    assert weights.read_bytes() == before
