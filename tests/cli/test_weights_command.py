"""`segcli weights list / add / verify / pull` through click's CliRunner (caches under tmp_path)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from robustness_support import run_in_terminal
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


def _plain_rows(output: str) -> dict[str, dict[str, str]]:
    """`weights list` piped: a header line, then one tab-separated row per checkpoint."""
    header, *lines = output.splitlines()
    columns = header.split("\t")
    rows = [dict(zip(columns, line.split("\t"), strict=True)) for line in lines]
    return {row["name"]: row for row in rows}


def test_list_shows_torchvision_records_and_where_they_are(home, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "lraspp_mobilenet_v3_large-d234d4ea.pth").write_bytes(b"x")
    result = _run("weights", "list")
    assert result.exit_code == 0, result.output
    rows = _plain_rows(result.output)
    for name in ("fcn-resnet50-coco", "deeplabv3-resnet101-coco", "lraspp-coco", "deeplabv3plus-resnet101-voc-os16"):
        assert name in rows
    assert rows["deeplabv3-resnet50-coco"]["mIoU"] == "0.664" and rows["deeplabv3-resnet50-coco"]["file"] == "not downloaded"
    assert rows["lraspp-coco"]["file"] == str(hub / "lraspp_mobilenet_v3_large-d234d4ea.pth")
    assert "no public download" in rows["fcn8s-voc-caffe"]["file"]


def test_list_says_which_data_each_miou_was_measured_on(home):
    rows = _plain_rows(_run("weights", "list").output)
    assert rows["deeplabv3-resnet50-coco"]["mIoU on"] == "COCO val2017"
    assert rows["deeplabv3plus-resnet101-voc-os16"]["mIoU on"] == "VOC 2012 val"
    assert rows["deeplabv3plus-mobilenet-cityscapes-os16"]["mIoU on"] == "Cityscapes val"
    assert rows["deeplabv3p-mobilenet-synth"]["mIoU on"] == "synthetic scenes"
    from segcli.checkpoints.manifest import find_record

    shipped = dict(find_record("deeplabv3p-mobilenet-synth").metrics)["miou"]  # a figure the manifest records
    assert rows["deeplabv3p-mobilenet-synth"]["mIoU"] == f"{shipped:.3f}"


def test_list_piped_into_a_narrow_pipe_prints_whole_rows(home):
    """Not a terminal (CliRunner, like `| cat`), COLUMNS=80: nothing is cut, wrapped or boxed."""
    from segcli.checkpoints.manifest import load_manifest

    result = CliRunner().invoke(cli, ["weights", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "…" not in result.output and "│" not in result.output and "─" not in result.output
    rows = _plain_rows(result.output)
    assert set(rows) == set(load_manifest())
    cityscapes = rows["deeplabv3plus-mobilenet-cityscapes-os16"]
    assert cityscapes["model"] == "deeplabv3p-mobilenet" and cityscapes["classes"] == "19"
    assert max(len(line) for line in result.output.splitlines()) > 80  # long rows stay on one line


def test_list_json_has_every_record_with_its_file(home):
    from segcli.checkpoints.manifest import load_manifest, shipped_weights_dir

    result = CliRunner().invoke(cli, ["weights", "list", "--json"])
    assert result.exit_code == 0, result.output
    entries = {entry["name"]: entry for entry in json.loads(result.output)}
    assert set(entries) == set(load_manifest())
    synth = entries["lraspp-mobilenet-synth"]
    assert synth["on_disk"] == str(shipped_weights_dir() / "lraspp-mobilenet-synth.safetensors")
    assert synth["source"] == "shipped with segcli" and synth["miou_on"] == "synthetic scenes"
    assert synth["miou"] == pytest.approx(0.5016) and synth["classes"] == 9 and synth["model"] == "lraspp"
    coco = entries["lraspp-coco"]
    assert coco["on_disk"] is None and coco["url"].endswith(".pth") and coco["miou_on"] == "COCO val2017"
    assert coco["categories"] == list(VOC_CLASSES)


def test_list_on_terminals_cuts_nothing(home):
    """Real terminals (pseudo-terminals): 80 columns get one block per checkpoint, 250 a table; no
    value is cut with an ellipsis or cropped at the edge."""
    from segcli.checkpoints.manifest import load_manifest, shipped_weights_dir

    names = set(load_manifest())
    narrow = run_in_terminal(["weights", "list"], columns=80)
    assert "…" not in narrow
    assert names <= {line.strip() for line in narrow.splitlines()}  # each name whole, on its own line
    shipped = str(shipped_weights_dir() / "fcn8s-synth.safetensors")
    assert any(line.endswith(f"file: {shipped}") for line in narrow.splitlines())
    assert all(len(line) <= 80 or "file: /" in line for line in narrow.splitlines())
    wide = run_in_terminal(["weights", "list"], columns=250)
    assert "…" not in wide and "┃ name" in wide
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in wide.splitlines() if line.startswith("│")]
    assert {row[0] for row in cells} == names
    from segcli.checkpoints.manifest import find_record

    miou = f"{dict(find_record('fcn8s-synth').metrics)['miou']:.3f}"  # the manifest's own figure
    assert ["fcn8s-synth", "synthetic scenes", "fcn8s", "segcli-synth", "9", miou, "synthetic scenes", shipped] in cells


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


def _shipped_class_sets() -> dict:
    from segcli.checkpoints.manifest import shipped_manifest_path

    return json.loads(shipped_manifest_path().read_text(encoding="utf-8"))["class_sets"]


@pytest.mark.parametrize("class_set", sorted(_shipped_class_sets()))
def test_add_offers_every_class_set_of_the_shipped_manifest(home, tmp_path, class_set):
    """--classes-from takes its names from the shipped manifest: a set added there is offered by construction."""
    names = _shipped_class_sets()[class_set]["names"]
    path = tmp_path / f"{class_set}.pth"
    torch.save({"backbone.0.weight": torch.zeros(4, 3, 3, 3),
                "classifier.high_classifier.weight": torch.zeros(len(names), 4, 1, 1),
                "classifier.high_classifier.bias": torch.zeros(len(names))}, path)
    assert class_set in _run("weights", "add", "--help").output
    result = _run("weights", "add", str(path), "--name", f"mine-{class_set}", "--model", "lraspp",
                  "--classes-from", class_set)
    assert result.exit_code == 0, result.output
    from segcli.checkpoints.manifest import find_record

    record = find_record(f"mine-{class_set}")
    assert list(record.categories) == names
    assert json.loads(json.dumps(record.palette)) == _shipped_class_sets()[class_set].get("palette", "voc")


def test_add_refuses_wrong_class_count_duplicates_and_conflicting_flags(home, lraspp_file):
    result = _run("weights", "add", str(lraspp_file), "--name", "two", "--model", "lraspp", "--classes", "a,b")
    assert result.exit_code == 1 and "predicts 21 classes but 2 class names" in result.output
    assert not (home / "manifest.json").exists()
    result = _run("weights", "add", str(lraspp_file), "--name", "lraspp-coco", "--model", "lraspp")
    assert result.exit_code == 1 and "already exists" in result.output
    result = _run("weights", "add", str(lraspp_file), "--name", "x", "--model", "lraspp",
                  "--classes", "a", "--classes-from", "voc")
    assert result.exit_code == 2 and "not both" in result.output
    result = _run("weights", "add", str(lraspp_file), "--name", "../escape", "--model", "lraspp")
    assert result.exit_code == 2 and "Invalid value for --name" in result.output and "may only use" in result.output
    assert not (home / "manifest.json").exists()


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


def test_list_json_into_an_impossible_path_is_one_error_line(home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["weights", "list", "--json", str(blocker / "sub" / "w.json")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        f"Error: cannot write {blocker / 'sub' / 'w.json'}: {blocker} is a file, not a folder; choose another --json"]


def test_list_groups_synthetic_and_published_and_says_where_plainly(home):
    from segcli.checkpoints.manifest import load_manifest

    result = _run("weights", "list")
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    columns = header.split("\t")
    assert "on disk" not in columns and "file" in columns
    rows = [dict(zip(columns, line.split("\t"), strict=True)) for line in lines]
    groups = [row["group"] for row in rows]
    assert groups == sorted(groups, key=["synthetic scenes", "published"].index)  # grouped, synthetic first
    records = load_manifest()
    for row in rows:
        synthetic = records[row["name"]].dataset == "segcli-synth"
        assert row["group"] == ("synthetic scenes" if synthetic else "published")
        assert "not on disk" not in row["file"]
        miou = records[row["name"]].metric_dict.get("miou")
        if isinstance(miou, (int, float)):
            assert row["mIoU"] == f"{miou:.3f}"  # a fraction, as the README's tables write it


@pytest.mark.parametrize("command", [["weights", "list"], ["models"]])
def test_json_into_a_file_says_it_wrote_it(home, tmp_path, command):
    out = tmp_path / "listing.json"
    result = CliRunner().invoke(cli, [*command, "--json", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-1] == f"wrote {out}"
    assert result.stdout == "" and json.loads(out.read_text())
