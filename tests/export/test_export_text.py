"""What exported files and their errors say: the ONNX logits' class axis is the class count, TorchScript
metadata is plain JSON under the file's own name, running a graph without onnxruntime says so, and a
precision an ONNX graph cannot run in is refused."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from robustness_support import TINY_CATEGORIES, WIDE_TERMINAL, random_rgb, run_predict, save_image
from segcli.cli.main import cli

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _export(checkpoint: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(cli, ["export", "--model", "lraspp", "--weights", str(checkpoint), "--out", str(out),
                                      "--size", "64", *extra], env=WIDE_TERMINAL)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def dynamic_graph(tiny_checkpoint, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("graph") / "tiny.onnx"
    _export(tiny_checkpoint, path, "--dynamic")
    return path


@pytest.mark.slow
def test_dynamic_graph_fixes_the_logits_class_axis_to_the_class_count(dynamic_graph):
    import onnx

    outputs = {output.name: output for output in onnx.load(str(dynamic_graph)).graph.output}
    class_axis = outputs["logits"].type.tensor_type.shape.dim[1]
    assert class_axis.HasField("dim_value") and class_axis.dim_value == len(TINY_CATEGORIES)
    batch_axis = outputs["logits"].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param  # batch, height and width stay free


@pytest.mark.slow
def test_torchscript_metadata_is_plain_json_under_the_files_own_name(tiny_checkpoint, tmp_path):
    from segcli.export.torchscript_format import load_torchscript

    path = tmp_path / "tiny-module.pt"
    _export(tiny_checkpoint, path, "--format", "torchscript")
    with zipfile.ZipFile(path) as archive:
        folders = {name.split("/")[0] for name in archive.namelist()}
        stored = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith("extra/segcli.json"))))
    assert folders == {"tiny-module"}, folders  # not the temporary file's name
    assert stored["categories"] == list(TINY_CATEGORIES)  # a list, not a JSON string inside the JSON
    assert isinstance(stored["palette"], list) and isinstance(stored["verification"], dict)
    _, metadata = load_torchscript(path)
    assert json.loads(metadata["categories"]) == list(TINY_CATEGORIES)  # the reader's view: strings, as ONNX's


def test_running_a_graph_without_onnxruntime_says_running_needs_it(tmp_path, monkeypatch):
    save_image(Image.fromarray(random_rgb(32, 32, 1)), tmp_path / "a.png")
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"onnxruntime is checked before the file is read")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = run_predict([tmp_path / "a.png"], tmp_path / "out", graph)
    assert result.exit_code == 1
    assert "running an ONNX graph needs" in result.stderr and "export needs" not in result.stderr


def test_bf16_with_an_onnx_graph_is_a_usage_error(tmp_path):
    save_image(Image.fromarray(random_rgb(32, 32, 1)), tmp_path / "a.png")
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"refused before the file is read")
    result = run_predict([tmp_path / "a.png"], tmp_path / "out", graph, "--precision", "bf16")
    assert result.exit_code == 2, result.stderr
    assert "--precision" in result.stderr and "fp32" in result.stderr
    assert not (tmp_path / "out").exists()
