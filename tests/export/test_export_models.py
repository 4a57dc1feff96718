"""Every zoo family, tiny and with random weights, exports to ONNX and TorchScript and passes verification;
a graph with a size frozen by tracing is caught and not written."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_testing import SMALL_OPTIONS, randomize_batchnorm_stats
from segcli.checkpoints.record import (CAFFE_PREPROCESSING, IMAGENET_PREPROCESSING, TORCHVISION_PREPROCESSING,
                                       CheckpointRecord)
from segcli.errors import SegcliError
from segcli.models import MODEL_NAMES, build_model
from segcli.palettes import VOC_CLASSES

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from segcli.export.exporter import ExportError, ExportSettings, export_model  # noqa: E402

# each family with the preprocessing of its published checkpoints (torchvision's resize at a test size)
TORCHVISION_FAMILIES = ("fcn-resnet", "deeplabv3-", "lraspp")
QUICK_ONNX = ("lraspp", "fcn8s")  # hardswish + global pooling + resize; crops + BGR (the rest: slow)
QUICK_TORCHSCRIPT = ("lraspp",)


def _preprocessing(model: str):
    if model.startswith(TORCHVISION_FAMILIES):
        return dataclasses.replace(TORCHVISION_PREPROCESSING, resize_shorter=72)
    if model.startswith(("fcn32s", "fcn16s", "fcn8s", "deeplabv1", "deeplabv2")):
        return CAFFE_PREPROCESSING
    return IMAGENET_PREPROCESSING


def tiny_zoo_model(name: str) -> tuple[nn.Module, CheckpointRecord]:
    torch.manual_seed(0)
    model = build_model(name, len(VOC_CLASSES), **SMALL_OPTIONS[name]).eval()
    randomize_batchnorm_stats(model)
    if name.startswith(("fcn16s", "fcn8s")):  # skip scores start at zero: give the crops something to carry
        with torch.no_grad():
            for module in (model.score_pool4, getattr(model, "score_pool3", None)):
                if module is not None:
                    module.weight.normal_(0, 0.05)
    record = CheckpointRecord(name=f"{name}-random", model=name, dataset="none", categories=VOC_CLASSES,
                              filename="-", preprocessing=_preprocessing(name),
                              model_kwargs=tuple(SMALL_OPTIONS[name].items()))
    return model, record


def _marks(name: str, quick: tuple[str, ...]):
    """Slow for every family but the quick ones (the parameter's mark, not the function's: a slow mark on
    the function would take the quick ones out of `make test-fast` too)."""
    return () if name in quick else (pytest.mark.slow,)


@pytest.mark.parametrize("name", [pytest.param(name, marks=_marks(name, QUICK_ONNX)) for name in MODEL_NAMES])
def test_tiny_zoo_model_exports_to_dynamic_onnx_and_verifies(name, tmp_path):
    import onnx

    model, record = tiny_zoo_model(name)
    result = export_model(model, record, tmp_path / f"{name}.onnx", ExportSettings(size=(64, 64), dynamic=True))
    assert result.verification.passed, "\n".join(result.verification.lines())
    shapes = [(check.batch, check.height, check.width) for check in result.verification.checks]
    assert shapes == [(1, 64, 64), (2, 49, 43)]  # two sizes, two batch sizes
    graph = onnx.load(str(result.path))
    assert [value.name for value in graph.graph.input] == ["image"]
    assert [value.name for value in graph.graph.output] == ["labels", "logits"]
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    saved = json.loads(result.report_path.read_text())
    assert saved["verification"]["passed"] is True and saved["model"] == name


@pytest.mark.parametrize("name", [pytest.param(name, marks=_marks(name, QUICK_TORCHSCRIPT))
                                  for name in MODEL_NAMES])
def test_tiny_zoo_model_exports_to_torchscript_and_verifies(name, tmp_path):
    from segcli.export.torchscript_format import load_torchscript

    model, record = tiny_zoo_model(name)
    result = export_model(model, record, tmp_path / f"{name}.pt", ExportSettings(format="torchscript", size=(64, 64)))
    assert result.verification.passed, "\n".join(result.verification.lines())
    assert [(c.batch, c.height, c.width) for c in result.verification.checks] == [(1, 64, 64), (2, 49, 43)]
    _, metadata = load_torchscript(result.path)
    assert metadata["model"] == name and json.loads(metadata["verification"])["passed"] is True


class FrozenSizeModel(nn.Module):
    """Upsamples to Python ints taken from the input shape: tracing turns them into constants."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        return F.interpolate(self.conv(F.avg_pool2d(x, 4)), size=(height, width), mode="bilinear")


FROZEN_RECORD = CheckpointRecord(name="frozen", model="lraspp", dataset="none", categories=("a", "b", "c"),
                                 filename="-")


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_a_size_frozen_by_tracing_fails_verification_and_keeps_the_old_file(fmt, suffix, tmp_path):
    out = tmp_path / f"frozen{suffix}"
    out.write_bytes(b"the user's old file")
    settings = ExportSettings(format=fmt, size=(64, 64), dynamic=fmt == "onnx", overwrite=True)
    with pytest.raises(ExportError) as caught:
        export_model(FrozenSizeModel(), FROZEN_RECORD, out, settings)
    message = str(caught.value)
    assert "was not written" in message and "batch 2 at 49x43: FAILED" in message
    assert "batch 1 at 64x64: labels agree on 100.0000%" in message
    assert out.read_bytes() == b"the user's old file"
    assert sorted(path.name for path in tmp_path.iterdir()) == [out.name]  # no temporary left behind


def test_a_static_graph_is_checked_twice_at_its_one_size(tmp_path):
    result = export_model(FrozenSizeModel(), FROZEN_RECORD, tmp_path / "static.onnx", ExportSettings(size=(40, 48)))
    assert [(c.batch, c.height, c.width) for c in result.verification.checks] == [(1, 40, 48), (1, 40, 48)]
    assert result.verification.passed  # a frozen size is right for a graph that takes one size


def test_opset_below_the_antialias_resize_is_refused(tmp_path):
    model, record = tiny_zoo_model("lraspp")  # resizes its input (torchvision)
    with pytest.raises(SegcliError, match="antialiasing, which ONNX has from opset 18$") as caught:
        export_model(model, record, tmp_path / "x.onnx", ExportSettings(size=(64, 64), opset=17))
    assert caught.value.hint == "pass --opset 18 or higher"
    with pytest.raises(SegcliError, match="opset 11 is outside what the torchscript exporter writes"):
        export_model(model, record, tmp_path / "x.onnx", ExportSettings(size=(64, 64), opset=11))
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("opset", [14, 20])
def test_other_opsets_export_mobilenet_v3_hardswish(opset, tmp_path):
    model, record = tiny_zoo_model("lraspp")
    record = dataclasses.replace(record, preprocessing=IMAGENET_PREPROCESSING)  # no resize: opset 14 allowed
    result = export_model(model, record, tmp_path / "x.onnx", ExportSettings(size=(48, 48), opset=opset))
    assert result.verification.passed
    import onnx

    assert onnx.load(str(result.path)).opset_import[0].version == opset


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_verified_graph(tmp_path):
    pytest.importorskip("onnxscript")
    model, record = tiny_zoo_model("lraspp")
    result = export_model(model, record, tmp_path / "dynamo.onnx",
                          ExportSettings(size=(64, 64), dynamic=True, exporter="dynamo"))
    assert result.verification.passed, "\n".join(result.verification.lines())
    assert [(c.batch, c.height, c.width) for c in result.verification.checks] == [(1, 64, 64), (2, 49, 43)]


@pytest.mark.parametrize("test, quick", [(test_tiny_zoo_model_exports_to_dynamic_onnx_and_verifies, QUICK_ONNX),
                                         (test_tiny_zoo_model_exports_to_torchscript_and_verifies, QUICK_TORCHSCRIPT)])
def test_the_quick_exports_run_without_the_slow_tests(test, quick):
    """`make test-fast` (-m "not slow") runs the quick families' exports: no slow mark on them or on the function."""
    assert quick and set(quick) <= set(MODEL_NAMES)
    assert all(mark.name != "slow" for mark in getattr(test, "pytestmark", []))
    parametrize = next(mark for mark in test.pytestmark if mark.name == "parametrize")
    slow = {param.values[0] for param in parametrize.args[1] if any(m.name == "slow" for m in param.marks)}
    assert slow == set(MODEL_NAMES) - set(quick)
