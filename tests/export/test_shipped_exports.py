"""Every shipped checkpoint, exported, gives `segcli predict --precision fp32`'s labels
on >= 99.5% of the pixels of samples/ (ONNX through `predict --weights FILE.onnx`, TorchScript loaded by torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from robustness_support import WIDE_TERMINAL
from segcli.checkpoints.manifest import load_manifest, shipped_weights_dir
from segcli.cli.main import cli
from segcli.imageio import load_image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "synth" / "JPEGImages"
MIN_AGREEMENT = 0.995
SHIPPED = [record for record in load_manifest().values()
           if record.layout == "segcli" and (shipped_weights_dir() / record.filename).is_file()]


def _segcli(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args), env=WIDE_TERMINAL)
    assert result.exit_code == 0, result.output


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {path.stem: np.array(Image.open(path)) for path in sorted(folder.glob("*.png"))
            if not path.stem.endswith("_overlay")}


@pytest.fixture(scope="module")
def torch_fp32_labels(tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """`segcli predict --precision fp32` on samples/, per shipped checkpoint."""
    labels = {}
    for record in SHIPPED:
        out = tmp_path_factory.mktemp(f"torch-{record.name}")
        _segcli("predict", str(SAMPLES), "--model", record.model, "--weights", record.name, "--device", "cpu",
                "--precision", "fp32", "--outputs", "label,json", "--out", str(out))
        labels[record.name] = _labels(out)
    return labels


def test_every_shipped_checkpoint_is_covered():
    assert {record.name for record in SHIPPED} >= {
        "deeplabv3p-mobilenet-synth", "lraspp-mobilenet-synth", "deeplabv3-mobilenet-synth", "fcn8s-synth",
        "fcn32s-synth"}


@pytest.mark.parametrize("record", SHIPPED, ids=lambda record: record.name)
def test_onnx_export_predicts_the_fp32_labels(record, torch_fp32_labels, tmp_path):
    graph = tmp_path / f"{record.name}.onnx"
    _segcli("export", "--weights", record.name, "--out", str(graph), "--size", "128", "--dynamic")
    _segcli("predict", str(SAMPLES), "--model", record.model, "--weights", str(graph), "--outputs", "label,json",
            "--out", str(tmp_path / "onnx"))
    expected, got = torch_fp32_labels[record.name], _labels(tmp_path / "onnx")
    assert sorted(got) == sorted(expected) and len(got) == len(list(SAMPLES.glob("*.jpg")))
    for name, labels in expected.items():
        assert (got[name] == labels).mean() >= MIN_AGREEMENT, name


@pytest.mark.parametrize("record", SHIPPED, ids=lambda record: record.name)
def test_torchscript_export_predicts_the_fp32_labels(record, torch_fp32_labels, tmp_path):
    from segcli.export.torchscript_format import load_torchscript

    module_path = tmp_path / f"{record.name}.pt"
    _segcli("export", "--weights", record.name, "--out", str(module_path), "--size", "128")
    module, metadata = load_torchscript(module_path)
    assert metadata["checkpoint"] == record.name
    for name, labels in torch_fp32_labels[record.name].items():
        image = load_image(SAMPLES / f"{name}.jpg").rgb
        with torch.inference_mode():
            got, _ = module(torch.from_numpy(image[None]))
        assert (got[0].numpy() == labels).mean() >= MIN_AGREEMENT, name
