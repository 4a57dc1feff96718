"""`segcli weights list / add / verify / pull` through click's CliRunner (caches under tmp_path)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from segcli.checkpoints.download import sha256_of
from segcli.cli.main import cli
from segcli.palettes import VOC_CLASSES

ENV = {"COLUMNS": "240"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "segcli"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "segcli"


@pytest.fixture
def lraspp_file(tmp_path):
    path = tmp_path / "my_lraspp.pth"
    torch.manual_seed(0)
    torch.save({"backbone.0.weight": torch.randn(4, 3, 3, 3),
                "classifier.high_classifier.weight": torch.randn(21, 4, 1, 1),
                "classifier.high_classifier.bias": torch.randn(21)}, path)
    return path


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), env=ENV)


def test_list_shows_torchvision_records_and_where_they_are(home, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "lraspp_mobilenet_v3_large-d234d4ea.pth").write_bytes(b"x")
    result = _run("weights", "list")
    assert result.exit_code == 0, result.output
    for name in ("fcn-resnet50-coco", "deeplabv3-resnet101-coco", "lraspp-coco", "deeplabv3plus-resnet101-voc-os16"):
        assert name in result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "66.4" in lines["deeplabv3-resnet50-coco"] and "not downloaded" in lines["deeplabv3-resnet50-coco"]
    assert str(hub) in lines["lraspp-coco"]
    assert "no public download" in lines["fcn8s-voc-caffe"]


def test_list_filters_by_model(home):
    result = _run("weights", "list", "--model", "lraspp")
    assert result.exit_code == 0
    assert "lraspp-coco" in result.output and "fcn-resnet50-coco" not in result.output


def test_add_then_verify_passes_and_corruption_fails(home, lraspp_file):
    result = _run("weights", "add", str(lraspp_file), "--name", "my-lraspp", "--model", "lraspp",
                  "--classes-from", "voc", "--dataset", "street")
    assert result.exit_code == 0, result.output
    copied = home / "checkpoints" / "my-lraspp.pth"
    assert copied.read_bytes() == lraspp_file.read_bytes()
    entry = json.loads((home / "manifest.json").read_text())["checkpoints"][0]
    assert entry["name"] == "my-lraspp" and entry["sha256"] == sha256_of(lraspp_file)
    assert entry["categories"] == list(VOC_CLASSES) and entry["dataset"] == "street"
    assert entry["layout"] == "segcli"

    result = _run("weights", "verify", "my-lraspp")
    assert result.exit_code == 0, result.output
    assert f"my-lraspp: ok {copied}" in result.output

    data = bytearray(copied.read_bytes())
    data[-1] ^= 0xFF
    copied.write_bytes(bytes(data))
    result = _run("weights", "verify")
    assert result.exit_code == 1
    assert "mismatch" in result.output and str(copied) in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: 1 file(s) do not match")


def test_add_refuses_wrong_class_count_duplicates_and_conflicting_flags(home, lraspp_file):
    result = _run("weights", "add", str(lraspp_file), "--name", "two", "--model", "lraspp", "--classes", "a,b")
    assert result.exit_code == 1 and "predicts 21 classes but 2 class names" in result.output
    assert not (home / "manifest.json").exists()
    result = _run("weights", "add", str(lraspp_file), "--name", "lraspp-coco", "--model", "lraspp")
    assert result.exit_code == 1 and "already exists" in result.output
    result = _run("weights", "add", str(lraspp_file), "--name", "x", "--model", "lraspp",
                  "--classes", "a", "--classes-from", "voc")
    assert result.exit_code == 2 and "not both" in result.output


def test_pull_without_url_says_where_to_put_the_file(home):
    result = _run("weights", "pull", "fcn32s-voc-caffe")
    assert result.exit_code == 1
    assert "no public download" in result.output and "fcn32s_from_caffe.pth" in result.output
    assert str(home / "checkpoints") in result.output.replace("\n", "")


def test_pull_of_a_file_already_on_disk_does_not_download(home, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "lraspp_mobilenet_v3_large-d234d4ea.pth").write_bytes(b"x")
    result = _run("weights", "pull", "lraspp-coco")
    assert result.exit_code == 0 and "already on disk" in result.output
