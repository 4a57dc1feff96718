"""`--weights FILE.onnx` with crafted metadata or a graph that misbehaves: one Error line (or one
`failed:` line per image the runtime cannot run), never a traceback.

The graphs are written by hand with onnx.helper (no export needed): `image` uint8 [N, H, W, 3] ->
`logits` = the image's RGB values as 3 class scores [N, 3, H, W], `labels` = their argmax; the
metadata is what `segcli export` writes (segcli.export.metadata.graph_metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustness_support import TINY_CATEGORIES, assert_no_traceback, random_rgb, run_predict, save_image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

METADATA = {
    "model": "lraspp", "checkpoint": "hand-made", "categories": json.dumps(list(TINY_CATEGORIES)),
    "palette": json.dumps([[0, 0, 0], [128, 0, 0], [0, 128, 0]]), "segcli_version": "test",
    "dataset": "segcli-test", "input_scales": "[1.0]",
}


def _graph(path: Path, metadata: dict[str, str], logits: str = "rgb") -> Path:
    """`logits`: "rgb" (the image's channels as scores), "rank3" (the channel mean, [N, H, W]) or
    "8x8 only" (a reshape to [1, 3, 8, 8] that fails for every other image size)."""
    nodes = [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2])]
    shape = ["N", 3, "H", "W"]
    if logits == "rgb":
        nodes.append(helper.make_node("Identity", ["nchw"], ["logits"]))
    elif logits == "rank3":
        nodes.append(helper.make_node("ReduceMean", ["nchw"], ["logits"], axes=[1], keepdims=0))
        shape = ["N", "H", "W"]
    else:
        nodes += [helper.make_node("Constant", [], ["fixed"], value=helper.make_tensor(
                      "fixed", TensorProto.INT64, [4], [1, 3, 8, 8])),
                  helper.make_node("Reshape", ["nchw", "fixed"], ["logits"])]
    nodes.append(helper.make_node("ArgMax", ["logits"], ["labels"], axis=1, keepdims=0))
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.INT64, None),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def image(tmp_path) -> Path:
    return save_image(Image.fromarray(random_rgb(24, 32, 3)), tmp_path / "in" / "photo.png")


def test_a_hand_made_graph_runs_and_its_labels_are_the_argmax_of_its_logits(tmp_path, image):
    graph = _graph(tmp_path / "good.onnx", METADATA)
    result = run_predict([image], tmp_path / "out", graph)
    assert result.exit_code == 0, result.output
    labels = np.array(Image.open(tmp_path / "out" / "photo.png"))
    assert np.array_equal(labels, np.argmax(np.array(Image.open(image)), axis=2))


CRAFTED = {
    "palette entry out of range": ({"palette": json.dumps([[300, 0, 0], [1, 2, 3], [4, 5, 6]])}, "palette"),
    "palette entry not a colour": ({"palette": json.dumps(["red", "green", "blue"])}, "palette"),
    "palette too short": ({"palette": json.dumps([[1, 2, 3]])}, "palette"),
    "categories not names": ({"categories": json.dumps([1, 2, 3])}, "categories"),
    "category with an escape": ({"categories": json.dumps(["a", "\x1b]0;pwned\x07", "c"])}, "categories[1]"),
    "more categories than the graph's classes": ({"categories": json.dumps(["a", "b", "c", "d"]),
                                                  "palette": json.dumps([[0, 0, 0]] * 4)},
                                                 "predicts 3 classes but its metadata names 4"),
    "input_scales not JSON": ({"input_scales": "1.0, 2.0"}, "input_scales"),
    "input_scales without 1.0": ({"input_scales": "[0.5]"}, "input_scales"),
    "model free text": ({"model": "my fancy net\nError: forged"}, "model"),
    "checkpoint name with a newline": ({"checkpoint": "a\nError: forged"}, "name"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_onnx_metadata_is_one_error_line(case, tmp_path, image):
    change, word = CRAFTED[case]
    graph = _graph(tmp_path / "crafted.onnx", {**METADATA, **change})
    result = run_predict([image], tmp_path / "out", graph)
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "crafted.onnx" in errors[0] and word in errors[0], result.stderr
    assert "forged" not in result.stderr.replace(errors[0], "") and "\x1b" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_graph_whose_logits_are_not_rank_4_is_refused_on_load(tmp_path, image):
    graph = _graph(tmp_path / "flat.onnx", METADATA, logits="rank3")
    result = run_predict([image], tmp_path / "out", graph)
    assert_no_traceback(result)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "flat.onnx" in errors[0] and "rank 3" in errors[0], result.stderr


def test_runtime_failure_on_one_image_is_one_failed_line_and_the_run_goes_on(tmp_path):
    small = save_image(Image.fromarray(random_rgb(8, 8, 1)), tmp_path / "in" / "small.png")
    large = save_image(Image.fromarray(random_rgb(24, 32, 2)), tmp_path / "in" / "large.png")
    graph = _graph(tmp_path / "fixed.onnx", METADATA, logits="8x8 only")
    result = run_predict([small, large], tmp_path / "out", graph)
    assert_no_traceback(result)
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "onnxruntime failed on this image" in failed[0], result.output
    assert "Reshape" in failed[0]
    assert (tmp_path / "out" / "small.png").is_file() and not (tmp_path / "out" / "large.png").exists()


def test_export_names_an_odd_weights_file_escaped(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from robustness_support import WIDE_TERMINAL
    from segcli.cli.main import cli

    odd = tmp_path / "we[red]ird\x1b]0;t\x07.safetensors"
    odd.write_bytes(tiny_checkpoint.read_bytes())
    result = CliRunner().invoke(cli, ["export", "--model", "lraspp", "--weights", str(odd), "--out",
                                      str(tmp_path / "t.onnx"), "--size", "32", "--no-verify"], env=WIDE_TERMINAL)
    assert result.exit_code == 0, result.output
    assert "we[red]ird\\x1b]0;t\\x07.safetensors" in result.stderr and "\x1b" not in result.stderr


def test_a_good_graph_under_an_odd_file_name_still_runs(tmp_path, image):
    graph = _graph(tmp_path / "odd\\name\x1b.onnx", METADATA)
    result = run_predict([image], tmp_path / "out", graph)
    assert result.exit_code == 0, result.output
    assert "odd\\name\\x1b.onnx" in result.output and "\x1b" not in result.output
