"""The training loop: the loss falls, state files resume exactly, checkpoints carry the record."""

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

import segcli.training as training
from segcli.checkpoints.loading import RECORD_METADATA_KEY
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.errors import CheckpointError
from segcli.training import TrainConfig, batch_plan, poly_factor, train


class TinySegmenter(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                                  nn.Conv2d(12, 12, 3, padding=2, dilation=2), nn.ReLU(), nn.Dropout2d(0.1),
                                  nn.Conv2d(12, num_classes, 1))

    def forward(self, x):
        return self.body(x)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synth_dataset(root, 10, seed=5, size=(40, 40), val_fraction=0.2)  # 8 train, 2 val
    return root


def config(tiny_data, tmp_path, **changes) -> TrainConfig:
    base = dict(model="deeplabv1", data_dir=str(tiny_data), out=str(tmp_path / "tiny.safetensors"), iters=24,
                batch_size=4, lr=1e-2, save_every=10, device="cpu", precision="fp32", seed=3, val_split=None)
    base.update(changes)
    return TrainConfig(**base)


def test_poly_schedule_and_batch_plan():
    assert poly_factor(0, 100) == 1.0 and poly_factor(100, 100) == 0.0
    assert poly_factor(50, 100) == pytest.approx(0.5 ** 0.9)
    batches = list(batch_plan(8, 4, seed=1, start=0, total=4))
    assert sorted(i for i, _ in batches[0] + batches[1]) == list(range(8))  # one epoch = every sample once
    assert list(batch_plan(8, 4, seed=1, start=2, total=4)) == batches[2:]


def test_loss_falls_and_checkpoint_carries_record(tiny_data, tmp_path):
    result = train(config(tiny_data, tmp_path, val_split="val"), model_factory=TinySegmenter)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.75 * first
    with safe_open(str(result.checkpoint), "pt") as f:
        record = json.loads(f.metadata()[RECORD_METADATA_KEY])
        assert all(f.get_tensor(k).dtype in (torch.float16, torch.int64) for k in f.keys())
    assert record["model"] == "deeplabv1" and record["categories"] == list(SYNTH_CLASSES)
    assert result.val_metrics is not None and 0.0 <= result.val_metrics["miou"] <= 1.0
    state = torch.load(result.state_file, weights_only=True)
    assert state["iteration"] == 24
    assert {"model_state", "optimizer_state", "scheduler_state", "segcli_record"} <= set(state)


def test_resume_continues_exactly(tiny_data, tmp_path, monkeypatch):
    saved = {}
    original_save = training.save_training_checkpoint

    def keep_iteration_4(path, state):
        original_save(path, state)
        if state["iteration"] == 4:
            original_save(tmp_path / "at4.state.pt", state)
            saved["done"] = True

    monkeypatch.setattr(training, "save_training_checkpoint", keep_iteration_4)
    full = train(config(tiny_data, tmp_path, iters=8, save_every=4, out=str(tmp_path / "full.safetensors")),
                 model_factory=TinySegmenter)
    assert saved
    resumed = train(config(tiny_data, tmp_path, iters=8, save_every=4, out=str(tmp_path / "resumed.safetensors"),
                           resume=str(tmp_path / "at4.state.pt")), model_factory=TinySegmenter)
    assert len(resumed.losses) == 4
    assert resumed.losses == pytest.approx(full.losses[4:], rel=1e-4)
    full_state = torch.load(full.state_file, weights_only=True)["model_state"]
    resumed_state = torch.load(resumed.state_file, weights_only=True)["model_state"]
    for key, value in full_state.items():
        torch.testing.assert_close(resumed_state[key], value, rtol=1e-4, atol=1e-5)


def test_resume_refuses_other_model_or_finished_state(tiny_data, tmp_path):
    first = train(config(tiny_data, tmp_path, iters=2), model_factory=TinySegmenter)
    with pytest.raises(CheckpointError, match="already at iteration 2"):
        train(config(tiny_data, tmp_path, iters=2, resume=str(first.state_file)), model_factory=TinySegmenter)
    with pytest.raises(CheckpointError, match="not deeplabv2"):
        train(config(tiny_data, tmp_path, model="deeplabv2", iters=4, resume=str(first.state_file)),
              model_factory=TinySegmenter)


def test_cli_train_records_model_kwargs(tiny_data, tmp_path):
    from click.testing import CliRunner

    from segcli.checkpoints.loading import read_segcli_metadata
    from segcli.cli.main import cli

    out = tmp_path / "cli.safetensors"
    args = ["train", "--model", "deeplabv1", "--data", str(tiny_data), "--out", str(out), "--batch", "2",
            "--model-kwarg", "width=0.0625", "--device", "cpu", "--precision", "fp32"]
    usage = CliRunner().invoke(cli, args)
    assert usage.exit_code == 2 and "exactly one of --iters and --epochs" in usage.output
    result = CliRunner().invoke(cli, args + ["--iters", "2"])
    assert result.exit_code == 0, result.output
    metadata = read_segcli_metadata(out)
    assert metadata.record.model == "deeplabv1" and metadata.record.kwargs == {"width": 0.0625}
    assert metadata.extra["iterations"] == 2
    assert torch.load(f"{out}.state.pt", weights_only=True)["iteration"] == 2
