"""Reading checkpoints safely, adapting published layouts, strict loading, segcli safetensors files."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch
from torch import nn

from segcli.checkpoints.loading import (adapt_layout, checkpoint_num_classes, detect_layout, load_checkpoint,
                                        load_weights, read_checkpoint_file, read_segcli_metadata, read_state_dict)
from segcli.checkpoints.saving import save_segcli_checkpoint, save_training_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.errors import CheckpointError


class TinySegmenter(nn.Module):
    """backbone + classifier (+ optional aux head), named like torchvision's segmentation models."""

    def __init__(self, num_classes: int = 3, aux: bool = False) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.classifier = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1))
        self.aux_classifier = nn.Conv2d(8, num_classes, 1) if aux else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


class OtherNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 8, 3, padding=1)
        self.classifier = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for parameter in module.parameters():
        nn.init.normal_(parameter)
    return module


class WritesMarker:
    """Unpickling this would create a file: the loader must refuse before that happens."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": WritesMarker(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth.*could run code"):
        read_checkpoint_file(path)
    assert not marker.exists()


def test_truncated_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"weight": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth.*truncated"):
        read_checkpoint_file(path)


def test_non_checkpoint_and_missing_files_are_refused(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes\.pth"):
        read_checkpoint_file(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint_file(tmp_path / "absent.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_checkpoint_file(tmp_path / "list.pth")


def test_deeplabv3plus_pytorch_file_with_numpy_score_loads_into_the_model(tmp_path):
    source = _seeded(TinySegmenter(), seed=1)
    path = tmp_path / "best_model.pth"
    torch.save({"cur_itrs": 30000, "model_state": source.state_dict(), "optimizer_state": {"lr": 0.01},
                "scheduler_state": {"last_epoch": 3}, "best_score": np.float64(0.711)}, path)
    obj = read_checkpoint_file(path)
    assert detect_layout(obj) == "deeplabv3plus-pytorch"
    target = TinySegmenter()
    notes = load_checkpoint(target, path, model_name="tiny")
    assert any("model_state" in note for note in notes)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_module_prefix_and_aux_head_are_adapted_with_notes():
    source = _seeded(TinySegmenter(aux=True), seed=2)
    wrapped = {"state_dict": {f"module.{key}": value for key, value in source.state_dict().items()}}
    target = TinySegmenter(aux=False)
    adapted = adapt_layout(wrapped, "torchvision", set(target.state_dict()))
    assert set(adapted.state_dict) == set(target.state_dict())
    assert any("module." in note for note in adapted.notes)
    assert any("2 training-only aux_classifier" in note for note in adapted.notes)  # weight + bias
    load_weights(target, adapted.state_dict, "wrapped.pth")
    assert torch.equal(target.classifier[2].weight, source.classifier[2].weight)
    # a model that has an aux head keeps it
    kept = adapt_layout(wrapped, "torchvision", set(TinySegmenter(aux=True).state_dict()))
    assert "aux_classifier.weight" in kept.state_dict


def test_deeplabv3_head_of_deeplabv3plus_pytorch_is_renamed():
    source = _seeded(TinySegmenter(), seed=3).state_dict()
    nested = {(f"classifier.{key}" if key.startswith("classifier.") else key): value for key, value in source.items()}
    adapted = adapt_layout({"model_state": nested}, "deeplabv3plus-pytorch", set(source))
    assert set(adapted.state_dict) == set(source)
    assert any("classifier.classifier" in note for note in adapted.notes)


def test_key_report_for_another_class_count_names_the_shape_mismatch():
    checkpoint = _seeded(TinySegmenter(num_classes=19)).state_dict()
    model = TinySegmenter(num_classes=21)
    with pytest.raises(CheckpointError) as caught:
        load_weights(model, checkpoint, "x.pth", model_name="tiny-21")
    message = str(caught.value)
    assert "checkpoint x.pth does not fit tiny-21" in message
    assert "2 shape mismatches" in message  # classifier.2.weight and classifier.2.bias
    assert "classifier.2.weight: checkpoint [19,8,1,1] vs model [21,8,1,1]" in message
    assert "missing" not in message and "unexpected" not in message
    assert "\n" not in message


def test_key_report_for_another_model_counts_missing_and_unexpected_keys():
    checkpoint = OtherNet().state_dict()
    model = TinySegmenter()
    expected_missing = sorted(set(model.state_dict()) - set(checkpoint) - {"backbone.1.num_batches_tracked"})
    expected_unexpected = sorted(set(checkpoint) - set(model.state_dict()))
    with pytest.raises(CheckpointError) as caught:
        load_weights(model, checkpoint, "other.pth")
    message = str(caught.value)
    first_three = ", ".join([key for key in model.state_dict() if key in expected_missing][:3])
    assert f"{len(expected_missing)} missing keys ({first_three}, ...)" in message
    assert f"{len(expected_unexpected)} unexpected (encoder.weight, encoder.bias)" in message
    assert "another model or class count" in message


def test_old_checkpoints_without_num_batches_tracked_load():
    source = _seeded(TinySegmenter(), seed=4).state_dict()
    source = {key: value for key, value in source.items() if not key.endswith("num_batches_tracked")}
    model = TinySegmenter()
    load_weights(model, source, "old.pth")
    assert torch.equal(model.backbone[1].running_mean, source["backbone.1.running_mean"])


def test_class_count_comes_from_the_classifier_key_whatever_the_key_order():
    from segcli.models import build_model

    state = build_model("deeplabv3p-mobilenet", 7).state_dict()
    for order in (sorted(state), sorted(state, reverse=True)):
        wrapped = {"model_state": {f"module.{key}": state[key] for key in order}}
        assert checkpoint_num_classes(wrapped, "deeplabv3plus-pytorch", "deeplabv3p-mobilenet") == 7
    torchvision_like = {"aux_classifier.4.weight": torch.zeros(21, 10, 1, 1), "classifier.4.weight": torch.zeros(5, 256, 1, 1)}
    assert checkpoint_num_classes(torchvision_like, "torchvision", "deeplabv3-mobilenet") == 5
    assert checkpoint_num_classes({"fc.weight": torch.zeros(3, 4)}, "segcli", "lraspp") is None


def test_segcli_safetensors_roundtrip_in_half_precision(tmp_path):
    model = _seeded(TinySegmenter(), seed=5)
    record = CheckpointRecord(name="tiny-synth", model="lraspp", dataset="segcli-synth",
                              categories=("bg", "a", "b"), filename="ignored.pth", layout="torchvision")
    path = save_segcli_checkpoint(tmp_path / "tiny.safetensors", model, record, extra={"epochs": 2}, half=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]
    metadata = read_segcli_metadata(path)
    assert metadata.record.categories == ("bg", "a", "b")
    assert metadata.record.layout == "segcli" and metadata.record.filename == "tiny.safetensors"
    assert metadata.extra == {"epochs": 2}
    state = read_state_dict(path)
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert state[key].dtype == torch.float32
            assert torch.equal(state[key], value.half().float()), key
        else:
            assert torch.equal(state[key], value), key
    reloaded = TinySegmenter()
    load_checkpoint(reloaded, path)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.eval(), reloaded.eval()
    assert torch.allclose(reloaded(x), model(x), atol=0.05 * model(x).abs().max().item())


def test_non_segcli_safetensors_has_no_metadata_and_corrupt_one_is_refused(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(plain))
    assert read_segcli_metadata(plain) is None
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(plain.read_bytes()[:20])
    with pytest.raises(CheckpointError, match=r"broken\.safetensors"):
        read_state_dict(broken)


def test_training_checkpoint_loads_back_with_weights_only(tmp_path):
    model = _seeded(TinySegmenter(), seed=6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    optimizer.step()
    path = save_training_checkpoint(tmp_path / "run.pth", {
        "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(), "epoch": 3,
        "segcli_record": {"name": "run", "model": "lraspp", "categories": ["a", "b", "c"], "filename": "run.pth"},
    })
    obj = read_checkpoint_file(path)
    assert obj["epoch"] == 3 and detect_layout(obj) == "segcli"
    restored = torch.optim.SGD(TinySegmenter().parameters(), lr=0.1, momentum=0.9)
    restored.load_state_dict(obj["optimizer_state"])
    assert read_state_dict(path).keys() == model.state_dict().keys()
