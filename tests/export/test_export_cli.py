"""`segcli export` as a user runs it, and `segcli predict --weights FILE.onnx`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from robustness_support import (TINY_CATEGORIES, WIDE_TERMINAL, assert_no_traceback, random_rgb, run_predict,
                                save_image)
from segcli.cli.main import cli

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def run_export(*args: str):
    return CliRunner().invoke(cli, ["export", *args], catch_exceptions=True, env=WIDE_TERMINAL)


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    """The tiny checkpoint as a dynamic ONNX graph and as a static one at 64x64."""
    folder = tmp_path_factory.mktemp("exported")
    graphs = {"dynamic": folder / "tiny-dynamic.onnx", "static": folder / "tiny-static.onnx"}
    for kind, path in graphs.items():
        result = run_export("--model", "lraspp", "--weights", str(tiny_checkpoint), "--out", str(path),
                            "--size", "64", *(["--dynamic"] if kind == "dynamic" else []))
        assert result.exit_code == 0, result.output
    return graphs


@pytest.mark.slow
def test_export_prints_the_verification_and_writes_metadata(exported, tiny_checkpoint):
    import onnx

    from segcli.palettes import voc_colors

    metadata = {prop.key: prop.value for prop in onnx.load(str(exported["dynamic"])).metadata_props}
    assert json.loads(metadata["categories"]) == list(TINY_CATEGORIES)
    assert json.loads(metadata["palette"]) == [list(colour) for colour in voc_colors(3)]
    assert metadata["model"] == "lraspp" and metadata["checkpoint"] == tiny_checkpoint.stem
    assert metadata["segcli_version"] == __import__("segcli").__version__
    stored = json.loads(metadata["verification"])
    beside = json.loads(exported["dynamic"].with_name("tiny-dynamic.onnx.verification.json").read_text())
    assert stored["passed"] is True and beside["verification"] == stored
    assert [(c["batch"], c["height"], c["width"]) for c in stored["checks"]] == [(1, 64, 64), (2, 49, 43)]
    assert all(check["label_agreement"] >= 0.995 for check in stored["checks"])


@pytest.mark.slow
def test_export_output_names_each_check(tiny_checkpoint, tmp_path):
    result = run_export("--weights", str(tiny_checkpoint), "--model", "lraspp", "--out", str(tmp_path / "t.pt"),
                        "--size", "48")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t.pt.verification.json").read_text())
    assert report["settings"]["format"] == "torchscript" and report["verification"]["runtime"].startswith("TorchScript")
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert any(line.startswith("batch 1 at 48x48: labels agree on") and line.endswith(": ok") for line in lines)
    assert any(line.startswith("batch 2 at 37x33: labels agree on") for line in lines)
    assert lines[-1].startswith(f"wrote {tmp_path / 't.pt'}")


def test_predict_with_the_onnx_graph_writes_the_torch_fp32_labels(exported, tiny_checkpoint, tmp_path):
    images = [save_image(Image.fromarray(random_rgb(64, 64, seed)), tmp_path / "in" / f"{seed}.png")
              for seed in range(3)] + [save_image(Image.fromarray(random_rgb(50, 70, 9)), tmp_path / "in" / "9.png")]
    by_torch = run_predict([tmp_path / "in"], tmp_path / "torch", tiny_checkpoint)
    by_onnx = run_predict([tmp_path / "in"], tmp_path / "onnx", exported["dynamic"])
    assert by_torch.exit_code == 0 and by_onnx.exit_code == 0, by_onnx.output
    for image in images:
        expected = np.array(Image.open(tmp_path / "torch" / f"{image.stem}.png"))
        got = np.array(Image.open(tmp_path / "onnx" / f"{image.stem}.png"))
        assert (got == expected).mean() >= 0.995
    summary = json.loads((tmp_path / "onnx" / "0.json").read_text())
    assert summary["precision"] == "fp32" and summary["device"] == "cpu"
    assert summary["checkpoint"] == tiny_checkpoint.stem and "tiny-dynamic.onnx" in summary["checkpoint_source"]


def test_predict_with_a_static_graph_names_images_of_another_size(exported, tmp_path):
    save_image(Image.fromarray(random_rgb(64, 64, 1)), tmp_path / "in" / "fits.png")
    save_image(Image.fromarray(random_rgb(40, 64, 2)), tmp_path / "in" / "other.png")
    result = run_predict([tmp_path / "in"], tmp_path / "out", exported["static"], "--io-workers", "0")
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert "tiny-static.onnx takes 64x64 images only, this one is 40x64; export with --dynamic" in result.stderr
    assert (tmp_path / "out" / "fits.png").is_file() and not (tmp_path / "out" / "other.png").exists()


def test_predict_refuses_a_graph_for_another_model(exported, tmp_path):
    save_image(Image.fromarray(random_rgb(64, 64, 1)), tmp_path / "a.png")
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "a.png"), "--weights", str(exported["dynamic"]),
                                      "--out", str(tmp_path / "out")], env=WIDE_TERMINAL)
    assert result.exit_code == 1
    assert "Error: tiny-dynamic.onnx is a lraspp graph, not deeplabv3p-mobilenet; pass --model lraspp" in result.stderr


def test_predict_refuses_onnx_files_segcli_did_not_export(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    foreign = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    (tmp_path / "cut.onnx").write_bytes(b"\x08\x07\x12\x04abc")  # a few bytes of a protobuf, then nothing
    save_image(Image.fromarray(random_rgb(32, 32, 1)), tmp_path / "a.png")
    messages = {
        "foreign.onnx": "Error: foreign.onnx is not a graph exported by segcli (no model, checkpoint, categories, "
                        "palette metadata); export one with `segcli export --model M --out foreign.onnx`",
        "cut.onnx": "Error: cannot read",
        "missing.onnx": "Error: ONNX file",
    }
    for name, message in messages.items():
        result = run_predict([tmp_path / "a.png"], tmp_path / "out", tmp_path / name)
        assert_no_traceback(result)
        assert result.exit_code == 1 and message in result.stderr, result.stderr


@pytest.mark.parametrize("args,message", [
    (["--out", "x.bin"], "cannot tell the format from 'x.bin': pass --format onnx|torchscript"),
    (["--out", "x.pt", "--dynamic"], "--dynamic, --opset and --exporter are for --format onnx"),
    (["--out", "x.onnx", "--format", "torchscript", "--opset", "17"], "--dynamic, --opset and --exporter"),
    (["--out", "x.onnx", "--size", "16"], "too small"),
    (["--out", "x.onnx", "--size", "64,128"], "give one size"),
])
def test_bad_flags_are_usage_errors(args, message, tmp_path):
    result = run_export("--weights", "lraspp-mobilenet-synth", *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_an_existing_file_is_kept_without_overwrite(tiny_checkpoint, tmp_path):
    out = tmp_path / "mine.onnx"
    out.write_bytes(b"keep me")
    result = run_export("--model", "lraspp", "--weights", str(tiny_checkpoint), "--out", str(out), "--size", "32")
    assert result.exit_code == 1 and f"Error: {out} exists; pass --overwrite to replace it" in result.stderr
    assert out.read_bytes() == b"keep me"


def test_without_onnx_installed_the_error_says_what_to_install(tiny_checkpoint, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    result = run_export("--model", "lraspp", "--weights", str(tiny_checkpoint), "--out", str(tmp_path / "a.onnx"))
    assert result.exit_code == 1
    assert 'ONNX export needs onnx and onnxruntime: pip install "segcli[export]"' in result.stderr
    assert not (tmp_path / "a.onnx").exists()


def test_an_exported_graph_is_not_exported_again(exported, tmp_path):
    result = run_export("--model", "lraspp", "--weights", str(exported["dynamic"]), "--out", str(tmp_path / "b.onnx"))
    assert result.exit_code == 2
    assert "tiny-dynamic.onnx is already an exported graph: export from the checkpoint it was made from" in result.stderr


def test_the_graph_says_which_input_scales_it_fuses(exported):
    import onnx

    from segcli.checkpoints.onnx_model import OnnxRuntimeModel

    metadata = {prop.key: prop.value for prop in onnx.load(str(exported["static"])).metadata_props}
    assert json.loads(metadata["input_scales"]) == [1.0]
    assert OnnxRuntimeModel(exported["static"]).input_scales == (1.0,)


def test_predict_no_multiscale_with_a_single_scale_graph_runs_it(exported, tiny_checkpoint, tmp_path):
    """--no-multiscale asks for what a single-scale graph already does: no traceback, same labels."""
    save_image(Image.fromarray(random_rgb(64, 64, 4)), tmp_path / "in" / "a.png")
    plain = run_predict([tmp_path / "in"], tmp_path / "plain", exported["dynamic"])
    single = run_predict([tmp_path / "in"], tmp_path / "single", exported["dynamic"], "--no-multiscale")
    assert_no_traceback(single)
    assert plain.exit_code == 0 and single.exit_code == 0, single.output
    assert np.array_equal(np.array(Image.open(tmp_path / "plain" / "a.png")),
                          np.array(Image.open(tmp_path / "single" / "a.png")))
