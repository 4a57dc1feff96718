"""`segcli models`: the zoo, which checkpoint each model would use, `--json`, pipes and terminals."""

from __future__ import annotations

import json

import click

import pytest
import torch
from click.testing import CliRunner

from robustness_support import run_in_terminal
from segcli.checkpoints import manifest
from segcli.cli.main import cli
from segcli.models import ALIASES, MODEL_NAMES


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A shipped folder whose manifest holds three records: one shipped file, one downloadable, one
    with no public download; empty caches."""
    real = {record.name: record for record in manifest.read_manifest_file(manifest.shipped_manifest_path())}
    folder = tmp_path / "shipped"
    folder.mkdir()
    chosen = [real["lraspp-mobilenet-synth"], real["lraspp-coco"], real["deeplabv3-resnet50-coco"],
              real["fcn16s-voc-caffe"]]
    manifest.write_manifest_file(folder / "manifest.json", chosen)
    (folder / "lraspp-mobilenet-synth.safetensors").write_bytes(b"stand-in")
    monkeypatch.setattr(manifest, "shipped_weights_dir", lambda: folder)
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return folder


def _models_json() -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    return {entry["name"]: entry for entry in json.loads(result.output)}


def test_json_says_which_checkpoint_each_model_would_use(shipped, tmp_path):
    entries = _models_json()
    assert list(entries) == list(MODEL_NAMES)
    lraspp = entries["lraspp"]
    assert lraspp["weights_status"] == "on disk" and lraspp["weights"]["name"] == "lraspp-mobilenet-synth"
    assert lraspp["weights"]["path"] == str(shipped / "lraspp-mobilenet-synth.safetensors")
    assert lraspp["weights"]["synthetic_scenes_only"] is True
    assert set(lraspp["checkpoints"]) == {"lraspp-mobilenet-synth", "lraspp-coco"}
    assert entries["deeplabv3-resnet50"]["weights_status"] == "downloadable"
    assert entries["deeplabv3-resnet50"]["weights"] is None
    assert entries["fcn16s"]["weights_status"] == "not on disk"
    assert entries["deeplabv3p-mobilenet"]["aliases"] == [alias for alias, target in ALIASES.items()
                                                          if target == "deeplabv3p-mobilenet"]
    for name in ("deeplabv1", "deeplabv2", "fcn32s", "fcn-resnet101"):
        assert entries[name]["weights_status"] == "none" and entries[name]["checkpoints"] == []

    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save({}, hub / "lraspp_mobilenet_v3_large-d234d4ea.pth")  # a published file wins over the shipped one
    assert _models_json()["lraspp"]["weights"]["name"] == "lraspp-coco"


def test_piped_rows_mark_models_without_any_checkpoint(shipped):
    result = CliRunner().invoke(cli, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    header, *lines = result.output.splitlines()
    assert header.split("\t") == ["name", "description", "weights"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines}
    assert set(rows) == set(MODEL_NAMES) | set(ALIASES)
    assert rows["deeplabv1"][2] == rows["deeplabv2"][2] == "none anywhere: pass --weights FILE or train one"
    assert rows["lraspp"][2] == "lraspp-mobilenet-synth (shipped with segcli; synthetic scenes only)"
    assert rows["deeplabv3-resnet50"][2] == "none on disk: segcli weights pull deeplabv3-resnet50-coco"
    assert rows["fcn16s"][2] == "none on disk: fcn16s-voc-caffe has no public download (segcli weights list)"
    assert rows["deeplabv3p"][1] == "alias of deeplabv3p-mobilenet"


def test_terminal_of_80_columns_shows_whole_names():
    output = run_in_terminal(["models"], columns=80)
    assert "…" not in output
    assert all(len(line) <= 80 for line in output.splitlines())
    names = {line.split("│")[1].strip() for line in output.splitlines() if line.startswith("│")}
    names |= {line.strip() for line in output.splitlines() if line.strip() and not line.startswith(" ")}  # blocks
    assert set(MODEL_NAMES) | set(ALIASES) <= names


def test_terminal_of_80_columns_breaks_no_checkpoint_name():
    from click.testing import CliRunner

    from segcli.cli.main import cli

    entries = json.loads(CliRunner().invoke(cli, ["models", "--json"]).stdout)
    shown = [entry["weights"]["name"] if entry["weights"] else entry["suggested_checkpoint"] for entry in entries]
    shown = [name for name in shown if name]
    output = run_in_terminal(["models"], columns=80)
    lines = output.splitlines()
    assert any(len(name) > 25 for name in shown)
    for name in shown:
        assert any(name in line for line in lines), name  # whole on one line, not folded mid-word
    assert all(len(line) <= 80 for line in lines)


def test_help_lists_no_model_names_on_one_long_line():
    from click.testing import CliRunner

    from segcli.cli.main import cli

    for command in (["predict"], ["evaluate"], ["train"], ["export"], ["compare-upsampling"], ["weights", "add"]):
        text = CliRunner().invoke(cli, [*command, "--help"], env={"COLUMNS": "80"}).output
        assert all(len(line) <= 100 for line in text.splitlines()), (command, max(text.splitlines(), key=len))
        assert "segcli models" in " ".join(text.split()), command


def test_help_texts_name_no_repository_paths_and_document_every_train_option():
    import re

    from click.testing import CliRunner

    from segcli.cli.main import SUBCOMMANDS, cli
    from segcli.cli.train import train

    for command in SUBCOMMANDS:
        text = CliRunner().invoke(cli, [command, "--help"], env={"COLUMNS": "200"}).output
        assert not re.search(r"(?<![\w/-])(benchmarks|docs|training|samples|weights)/", text), (command, text)
    undocumented = [param.name for param in train.params if isinstance(param, click.Option) and not param.help]
    assert undocumented == []
