"""`segcli evaluate` output: `--json` on stdout or into a file, plain rows when piped, and the mIoU
row naming the data it was measured on."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from robustness_support import run_in_terminal
from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.models import build_model

CPU = ["--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def data_and_weights(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("evaluate-output")
    write_synth_dataset(root / "synth", 4, seed=5, size=(40, 40), val_fraction=0.5)
    torch.manual_seed(0)
    record = CheckpointRecord(name="tiny-synth-lraspp", model="lraspp", dataset="segcli-test",
                              categories=SYNTH_CLASSES, filename="w.safetensors", model_kwargs=(("width_mult", 0.25),))
    weights = save_segcli_checkpoint(root / "w.safetensors", build_model("lraspp", 9, width_mult=0.25), record)
    return root / "synth", weights


def _evaluate(data, weights, *extra: str, env=None):
    return CliRunner().invoke(cli, ["evaluate", "--model", "lraspp", "--weights", str(weights), "--data", str(data),
                                    *CPU, *extra], env=env)


@pytest.mark.slow
def test_json_alone_prints_only_json_on_stdout(data_and_weights):
    data, weights = data_and_weights
    result = _evaluate(data, weights, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert list(metrics["per_class"]) == list(SYNTH_CLASSES) and metrics["images"] == 2
    assert metrics["dataset"] == "segcli-synth" and metrics["miou_on"] == "synthetic scenes"


def test_piped_output_is_plain_rows_that_match_the_json(data_and_weights, tmp_path):
    data, weights = data_and_weights
    result = _evaluate(data, weights, "--json", str(tmp_path / "m.json"), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert not any(mark in result.stdout for mark in "│┃━…")
    header, *lines = result.stdout.splitlines()
    assert header == "class or measure\tvalue"
    rows = dict(line.split("\t") for line in lines)
    for name, iou in metrics["per_class"].items():
        assert rows[name] == ("absent" if iou is None else f"{iou:.4f}")
    assert rows["mIoU on synthetic scenes"] == f"{metrics['miou']:.4f}" and rows["pixel acc"] == f"{metrics['pixel_acc']:.4f}"
    assert "excluded from mIoU" in result.stderr


@pytest.mark.slow
def test_terminal_table_names_the_data_of_the_miou(data_and_weights):
    data, weights = data_and_weights
    output = run_in_terminal(["evaluate", "--model", "lraspp", "--weights", str(weights), "--data", str(data), *CPU],
                             columns=100)
    assert "mIoU on synthetic scenes" in output and "…" not in output
    assert "[val]" in output  # the split in the title is text, not rich markup


def test_piped_rows_come_with_their_title_and_no_blank_lines(data_and_weights):
    data, weights = data_and_weights
    result = _evaluate(data, weights, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "" not in lines, lines  # no stray blank line (the progress bar draws nothing when not on a terminal)
    assert lines[0] == f"tiny-synth-lraspp on {data} [val], 2 images"  # what the rows below measure
    assert result.stdout.splitlines()[0] == "class or measure\tvalue"
