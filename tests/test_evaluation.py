"""Evaluation over a folder: figures match a direct count; `segcli evaluate` writes the documented JSON."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from engine_support import engine_of
from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.data.voc import load_mask, read_split
from segcli.engine import SegmentationEngine
from segcli.evaluation import evaluate_folder
from segcli.inference_options import InferenceOptions
from segcli.models import build_model


class AlwaysBackground(nn.Module):
    def forward(self, x):
        logits = torch.zeros(x.shape[0], len(SYNTH_CLASSES), *x.shape[-2:])
        logits[:, 0] = 1.0
        return logits


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalsynth")
    write_synth_dataset(root, 4, seed=11, size=(40, 40), val_fraction=0.5)
    return root


def synth_record(model: str, **kwargs) -> CheckpointRecord:
    return CheckpointRecord(name="tiny", model=model, dataset="segcli-synth", categories=SYNTH_CLASSES,
                            filename="tiny.safetensors", model_kwargs=tuple(sorted(kwargs.items())))


def test_constant_prediction_matches_direct_count(tiny_data):
    engine = engine_of(AlwaysBackground(), synth_record("deeplabv1"))
    result = evaluate_folder(engine, tiny_data, "val")
    masks = [load_mask(mask) for _, mask in read_split(tiny_data, "val")]
    labels = np.concatenate([m.ravel() for m in masks])
    labels = labels[labels != 255]
    background_share = float((labels == 0).mean())
    present = set(np.unique(labels).tolist())
    # everything predicted background: background IoU = its share, other present classes 0, absent ones None
    assert result["pixel_acc"] == pytest.approx(background_share)
    assert result["per_class"]["background"] == pytest.approx(background_share)
    for index, name in enumerate(SYNTH_CLASSES[1:], start=1):
        assert result["per_class"][name] == (0.0 if index in present else None)
    assert result["miou"] == pytest.approx(background_share / len(present))
    assert result["images"] == 2 and result["split"] == "val"


def test_cli_evaluate_writes_documented_json(tiny_data, tmp_path):
    torch.manual_seed(0)
    model = build_model("deeplabv1", len(SYNTH_CLASSES), width=0.0625)
    weights = save_segcli_checkpoint(tmp_path / "tiny.safetensors", model, synth_record("deeplabv1", width=0.0625))
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(cli, ["evaluate", "--model", "deeplabv1", "--weights", str(weights),
                                      "--data", str(tiny_data), "--split", "val", "--device", "cpu",
                                      "--precision", "fp32", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output and "excluded from mIoU" in result.output
    metrics = json.loads(out.read_text())
    assert {"miou", "pixel_acc", "mean_class_acc", "fw_iou", "per_class", "excluded_classes"} <= set(metrics)
    assert list(metrics["per_class"]) == list(SYNTH_CLASSES)
    present = [v for v in metrics["per_class"].values() if v is not None]
    assert metrics["miou"] == pytest.approx(sum(present) / len(present))
    assert metrics["excluded_classes"] == [k for k, v in metrics["per_class"].items() if v is None]


def test_cli_evaluate_refuses_mismatched_classes(tiny_data, tmp_path):
    model = build_model("deeplabv1", 3, width=0.0625)
    record = CheckpointRecord(name="three", model="deeplabv1", dataset="x", categories=("a", "b", "c"),
                              filename="three.safetensors", model_kwargs=(("width", 0.0625),))
    weights = save_segcli_checkpoint(tmp_path / "three.safetensors", model, record)
    result = CliRunner().invoke(cli, ["evaluate", "--model", "deeplabv1", "--weights", str(weights),
                                      "--data", str(tiny_data), "--device", "cpu"])
    assert result.exit_code == 1
    assert "9 classes but the checkpoint predicts 3" in result.output


@pytest.mark.slow
def test_cli_evaluate_tta_scores_what_the_tta_engine_predicts(tiny_data, tmp_path, monkeypatch):
    import segcli.engine
    from segcli.metrics import ConfusionMatrix
    from segcli.tiling import TTAParams

    tta_calls = []
    real_tta = segcli.engine.tta_probabilities
    monkeypatch.setattr(segcli.engine, "tta_probabilities", lambda *a, **k: tta_calls.append(1) or real_tta(*a, **k))

    torch.manual_seed(1)
    model = build_model("deeplabv1", len(SYNTH_CLASSES), width=0.0625)
    weights = save_segcli_checkpoint(tmp_path / "tta.safetensors", model, synth_record("deeplabv1", width=0.0625))
    out = tmp_path / "tta.json"
    result = CliRunner().invoke(cli, ["evaluate", "--model", "deeplabv1", "--weights", str(weights), "--tta",
                                      "--data", str(tiny_data), "--device", "cpu", "--precision", "fp32",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["tta"] is True and len(tta_calls) == metrics["images"] == 2
    engine = SegmentationEngine.load("deeplabv1", weights=str(weights), device="cpu",
                                     options=InferenceOptions(precision="fp32", tta=TTAParams()))
    confusion = ConfusionMatrix(len(SYNTH_CLASSES))
    from PIL import Image

    for image_path, mask_path in read_split(tiny_data, "val"):
        labels = engine.predict(np.asarray(Image.open(image_path).convert("RGB"))).labels
        confusion.update(labels, load_mask(mask_path))
    assert metrics["pixel_acc"] == pytest.approx(confusion.to_dict()["pixel_acc"])
    assert metrics["miou"] == pytest.approx(confusion.to_dict()["miou"])


def test_class_names_that_differ_from_the_checkpoints_are_warned_about(tiny_data, tmp_path):
    import shutil
    import warnings

    from segcli.errors import SegcliWarning

    renamed = tmp_path / "renamed"
    shutil.copytree(tiny_data, renamed)
    description = json.loads((renamed / "dataset.json").read_text())
    description["classes"] = ["road", *description["classes"][1:-1], "sky"]
    (renamed / "dataset.json").write_text(json.dumps(description))
    engine = engine_of(AlwaysBackground(), synth_record("deeplabv1"))
    with pytest.warns(SegcliWarning) as caught:
        evaluate_folder(engine, renamed, "val")
    message, = [str(warning.message) for warning in caught]
    assert "names its classes otherwise than tiny" in message
    assert "0: road vs background" in message and "8: sky vs dots" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegcliWarning)  # the same names: not a word
        evaluate_folder(engine, tiny_data, "val")
