"""`train --resume` with a state file that does not fit the run: one `Error:` line, exit 1, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustness_support import assert_no_traceback
from segcli.cli.main import cli
from segcli.data.synth import write_synth_dataset

TINY = ["--model", "deeplabv1", "--model-kwarg", "width=0.0625", "--device", "cpu", "--precision", "fp32",
        "--batch-size", "2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A data folder and the state file of a 2-iteration adamw run on it (of 4 planned: stopped half way)."""
    root = tmp_path_factory.mktemp("resume")
    write_synth_dataset(root / "data", 5, seed=3, size=(32, 32), val_fraction=0.0)
    out = root / "run.safetensors"
    result = CliRunner().invoke(cli, ["train", *TINY, "--data", str(root / "data"), "--out", str(out), "--iters", "2"])
    assert result.exit_code == 0, result.output
    state = torch.load(f"{out}.state.pt", weights_only=True)
    state["total"] = 4
    torch.save(state, root / "half.state.pt")
    return root / "data", root / "half.state.pt"


def _variant(tmp_path: Path, state_file: Path, change) -> Path:
    state = torch.load(state_file, weights_only=True)
    change(state)
    path = tmp_path / "odd.state.pt"
    torch.save(state, path)
    return path


def _resume(data: Path, state: Path, tmp_path: Path, *extra: str):
    return CliRunner().invoke(cli, ["train", *TINY, "--data", str(data), "--out", str(tmp_path / "m.safetensors"),
                                    "--iters", "4", "--resume", str(state), *extra])


def _first_tensor(state: dict) -> None:
    key = next(iter(state["model_state"]))
    state["model_state"][key] = torch.zeros(1, 2)


@pytest.mark.parametrize("change, said", [
    (lambda state: state.__setitem__("iteration", -5), "iteration -5"),
    (lambda state: state.__setitem__("iteration", 10**9), "iteration 1000000000"),
    (lambda state: state.__setitem__("iteration", "abc"), "iteration 'abc'"),
    (lambda state: state.__setitem__("total", "many"), "total 'many'"),
    (_first_tensor, "weights do not fit"),
])
def test_a_state_that_does_not_fit_is_one_error_line(finished, tmp_path, change, said):
    data, state_file = finished
    result = _resume(data, _variant(tmp_path, state_file, change), tmp_path)
    assert result.exit_code == 1, result.output
    assert_no_traceback(result)
    assert said in result.output and result.output.startswith("Error: training state") and "--resume" in result.output, result.output
    assert "1000000000 iterations" not in result.output
    assert not (tmp_path / "m.safetensors").exists()


def test_a_state_of_another_optimizer_names_the_one_to_use(finished, tmp_path):
    data, state_file = finished
    result = _resume(data, state_file, tmp_path, "--optimizer", "sgd")
    assert result.exit_code == 1, result.output
    assert_no_traceback(result)
    assert "--optimizer adamw" in result.output, result.output


def test_a_state_that_fits_resumes(finished, tmp_path):
    data, state_file = finished
    result = _resume(data, state_file, tmp_path)
    assert result.exit_code == 0, result.output
    assert "at iteration 2/4" in result.output
