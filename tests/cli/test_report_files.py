"""Report files (`evaluate --json`, `weights list --json`, `models --json`, `benchmark --json/--csv/--markdown/--plot`):
never an input of the run, never a user's file without --overwrite, checked before the model loads."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from robustness_support import save_tiny_checkpoint
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset

CPU = ["--device", "cpu", "--precision", "fp32"]
NOTES = b"my notes, not segcli's\n"


@pytest.fixture(scope="module")
def data_and_weights(tmp_path_factory):
    import torch

    from segcli.checkpoints.saving import save_segcli_checkpoint
    from segcli.checkpoints.record import CheckpointRecord
    from segcli.models import build_model

    root = tmp_path_factory.mktemp("report-files")
    write_synth_dataset(root / "synth", 2, seed=5, size=(32, 32), val_fraction=0.5)
    torch.manual_seed(0)
    record = CheckpointRecord(name="tiny-synth-lraspp", model="lraspp", dataset="segcli-test",
                              categories=SYNTH_CLASSES, filename="w.safetensors", model_kwargs=(("width_mult", 0.25),))
    weights = save_segcli_checkpoint(root / "w.safetensors", build_model("lraspp", 9, width_mult=0.25), record)
    return root / "synth", weights


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load fails the test: the refusals must come first."""
    from segcli.engine import SegmentationEngine

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(SegmentationEngine, "load", classmethod(refuse))


def _evaluate(data, weights, *extra):
    return CliRunner().invoke(cli, ["evaluate", "--model", "lraspp", "--weights", str(weights), "--data", str(data),
                                    *CPU, *extra])


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_evaluate_json_never_replaces_the_checkpoint(data_and_weights, no_model_load, overwrite):
    data, weights = data_and_weights
    before = weights.read_bytes()
    result = _evaluate(data, weights, "--json", str(weights), *overwrite)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: {weights} is an input of this run: not replaced; choose another --json"]
    assert weights.read_bytes() == before


def test_evaluate_json_never_replaces_a_file_of_the_data_folder_through_a_link(data_and_weights, no_model_load,
                                                                              tmp_path):
    data, weights = data_and_weights
    split = data / "ImageSets" / "Segmentation" / "val.txt"
    before = split.read_bytes()
    os.link(split, tmp_path / "hard.json")
    (tmp_path / "soft.json").symlink_to(split)
    for target in ("hard.json", "soft.json"):
        result = _evaluate(data, weights, "--json", str(tmp_path / target), "--overwrite")
        assert result.exit_code == 1 and "is an input of this run" in result.output, result.output
    assert split.read_bytes() == before


def test_evaluate_json_keeps_a_users_file_unless_overwrite(data_and_weights, tmp_path):
    data, weights = data_and_weights
    notes = tmp_path / "notes.json"
    notes.write_bytes(NOTES)
    result = _evaluate(data, weights, "--json", str(notes))
    assert result.exit_code == 1
    assert "was not written by segcli: not replaced; pass --overwrite" in result.output
    assert notes.read_bytes() == NOTES
    result = _evaluate(data, weights, "--json", str(notes), "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads(notes.read_bytes())["images"] == 1
    assert f"wrote {notes}" in result.stderr
    again = _evaluate(data, weights, "--json", str(notes))  # segcli's own report: replaced without --overwrite
    assert again.exit_code == 0, again.output


def test_evaluate_without_the_split_file_says_what_it_should_hold_before_loading(tmp_path, no_model_load):
    data = tmp_path / "mine"
    (data / "JPEGImages").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["evaluate", "--model", "lraspp", "--data", str(data), *CPU])
    assert result.exit_code == 1, result.output
    line, = result.output.strip().splitlines()
    assert "ImageSets/Segmentation/val.txt" in line and "one image id per line" in line
    assert "segcli data synth" not in line


def test_weights_list_json_keeps_a_users_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "segcli"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOTES)
    result = CliRunner().invoke(cli, ["weights", "list", "--json", str(notes)])
    assert result.exit_code == 1 and "was not written by segcli" in result.output
    assert notes.read_bytes() == NOTES
    listing = tmp_path / "w.json"
    for _ in range(2):  # the second run replaces the first run's listing
        result = CliRunner().invoke(cli, ["weights", "list", "--json", str(listing)])
        assert result.exit_code == 0, result.output
        assert f"wrote {listing}" in result.stderr
    assert {entry["name"] for entry in json.loads(listing.read_text())} >= {"lraspp-coco"}


def test_weights_list_json_never_replaces_a_checkpoint_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "segcli"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    checkpoint = hub / "lraspp_mobilenet_v3_large-d234d4ea.pth"
    checkpoint.write_bytes(b"weights")
    result = CliRunner().invoke(cli, ["weights", "list", "--json", str(checkpoint), "--overwrite"])
    assert result.exit_code == 1 and "is an input of this run" in result.output
    assert checkpoint.read_bytes() == b"weights"


def test_models_json_keeps_a_users_file(tmp_path):
    notes = tmp_path / "notes.json"
    notes.write_bytes(NOTES)
    result = CliRunner().invoke(cli, ["models", "--json", str(notes)])
    assert result.exit_code == 1 and notes.read_bytes() == NOTES
    assert CliRunner().invoke(cli, ["models", "--json", str(notes), "--overwrite"]).exit_code == 0
    assert json.loads(notes.read_text())[0]["name"]


@pytest.mark.parametrize("option", ["--json", "--csv", "--markdown", "--plot"])
def test_benchmark_reports_keep_a_users_file_before_any_work(tmp_path, monkeypatch, option):
    import segcli.benchmarking.subjects as subjects
    from segcli.benchmarking.subjects import PlannedSubject

    class RefusingPlan(PlannedSubject):
        def load(self):
            raise AssertionError("a model was loaded before the report files were checked")

    monkeypatch.setattr(subjects, "plan_subjects", lambda names: [RefusingPlan("lraspp", None)])
    notes = tmp_path / "notes"
    notes.write_bytes(NOTES)
    result = CliRunner().invoke(cli, ["benchmark", "--models", "lraspp", "--sizes", "32", *CPU, option, str(notes)])
    assert result.exit_code == 1, result.output
    assert "was not written by segcli: not replaced; pass --overwrite" in result.output
    assert notes.read_bytes() == NOTES


def test_benchmark_refuses_a_checkpoint_and_two_options_naming_one_file(tmp_path, monkeypatch):
    import segcli.benchmarking.subjects as subjects
    from segcli.benchmarking.subjects import PlannedSubject
    from segcli.checkpoints.resolve import resolve_checkpoint

    weights = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    resolved = resolve_checkpoint("lraspp", str(weights))
    monkeypatch.setattr(subjects, "plan_subjects", lambda names: [PlannedSubject("lraspp", resolved)])
    before = weights.read_bytes()
    result = CliRunner().invoke(cli, ["benchmark", "--models", "lraspp", *CPU, "--csv", str(weights), "--overwrite"])
    assert result.exit_code == 1 and "is an input of this run" in result.output, result.output
    assert weights.read_bytes() == before
    same = tmp_path / "r.out"
    result = CliRunner().invoke(cli, ["benchmark", "--models", "lraspp", *CPU, "--csv", str(same),
                                      "--markdown", str(same)])
    assert result.exit_code == 1 and "--csv and --markdown both name" in result.output
