"""The training loop: the loss falls, state files resume exactly, checkpoints carry the record."""

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from segcli.checkpoints.saving import RECORD_METADATA_KEY
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.errors import CheckpointError
from segcli.training.config import TrainConfig
from segcli.training.run import train, training_plan
from segcli.training.schedule import batch_plan, poly_factor
from segcli.training.starting import source_model


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
    import segcli.training.state as state_module

    saved = {}
    original_save = state_module.save_training_checkpoint

    def keep_iteration_4(path, state):
        original_save(path, state)
        if state["iteration"] == 4:
            original_save(tmp_path / "at4.state.pt", state)
            saved["done"] = True

    monkeypatch.setattr(state_module, "save_training_checkpoint", keep_iteration_4)
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


def test_resume_refuses_another_model(tiny_data, tmp_path):
    first = train(config(tiny_data, tmp_path, iters=2), model_factory=TinySegmenter)
    with pytest.raises(CheckpointError, match="not deeplabv2"):
        train(config(tiny_data, tmp_path, model="deeplabv2", iters=4, resume=str(first.state_file),
                     out=str(tmp_path / "other.safetensors")), model_factory=TinySegmenter)


def test_cli_train_records_model_kwargs(tiny_data, tmp_path):
    from click.testing import CliRunner

    from segcli.checkpoints.loading import read_segcli_metadata
    from segcli.cli.main import cli

    out = tmp_path / "cli.safetensors"
    args = ["train", "--model", "deeplabv1", "--data", str(tiny_data), "--out", str(out), "--batch-size", "2",
            "--model-kwarg", "width=0.0625", "--device", "cpu", "--precision", "fp32"]
    usage = CliRunner().invoke(cli, args)
    assert usage.exit_code == 2 and "exactly one of --iters and --epochs" in usage.output
    result = CliRunner().invoke(cli, args + ["--iters", "2"])
    assert result.exit_code == 0, result.output
    metadata = read_segcli_metadata(out)
    assert metadata.record.model == "deeplabv1" and metadata.record.kwargs == {"width": 0.0625}
    assert metadata.extra["iterations"] == 2
    assert torch.load(f"{out}.state.pt", weights_only=True)["iteration"] == 2


def test_segmentation_loss_ce_and_ohem_against_hand_computation():
    from segcli.training.losses import segmentation_loss

    # 1 image, 2 classes, 1x6 pixels; the last pixel is ignored (255)
    margins = torch.tensor([4.0, 3.0, 0.5, -1.0, -2.0, 9.0])     # logit(class 1) - logit(class 0)
    logits = torch.stack([torch.zeros(6), margins]).reshape(1, 2, 1, 6)
    masks = torch.tensor([[[1, 1, 1, 1, 1, 255]]])
    per_pixel = [float(torch.nn.functional.softplus(-m)) for m in margins[:5]]  # -log sigmoid(m)
    assert float(segmentation_loss(logits, masks, "ce")) == pytest.approx(sum(per_pixel) / 5, rel=1e-6)
    assert float(segmentation_loss(logits, masks, "ce")) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, masks, ignore_index=255)), rel=1e-6)
    # hard pixels: p(true) < 0.7, i.e. margin < log(0.7/0.3) = 0.847 -> pixels 2, 3, 4
    assert float(segmentation_loss(logits, masks, "ohem")) == pytest.approx(sum(per_pixel[2:]) / 3, rel=1e-6)
    # when fewer than a quarter of the pixels are hard, the hardest quarter counts
    easy = torch.stack([torch.zeros(8), torch.tensor([9.0, 8, 7, 6, 5, 4, 3, 0.0])]).reshape(1, 2, 1, 8)
    ones = torch.ones(1, 1, 8, dtype=torch.long)
    hardest_two = [float(torch.nn.functional.softplus(-torch.tensor(m))) for m in (3.0, 0.0)]
    assert float(segmentation_loss(easy, ones, "ohem")) == pytest.approx(sum(hardest_two) / 2, rel=1e-6)
    with pytest.raises(Exception, match="unknown loss"):
        segmentation_loss(logits, masks, "dice")


def test_ohem_training_lowers_the_cross_entropy_and_is_recorded(tiny_data, tmp_path):
    from safetensors.torch import load_file

    from segcli.checkpoints.loading import read_segcli_metadata
    from segcli.checkpoints.record import IMAGENET_PREPROCESSING
    from segcli.data.voc import SegmentationDataset, read_split
    from segcli.engine import preprocess

    dataset = SegmentationDataset(read_split(tiny_data, "train"), len(SYNTH_CLASSES), IMAGENET_PREPROCESSING,
                                  preprocess)
    images = torch.stack([dataset[(i, 0)][0] for i in range(len(dataset))])
    masks = torch.stack([dataset[(i, 0)][1] for i in range(len(dataset))])

    def cross_entropy(state=None) -> float:
        torch.manual_seed(3)  # the run's seed: the same initial weights as train() builds
        model = TinySegmenter(len(SYNTH_CLASSES))
        if state is not None:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model.eval()(images), masks, ignore_index=255))

    before = cross_entropy()
    result = train(config(tiny_data, tmp_path, loss="ohem"), model_factory=TinySegmenter)
    assert cross_entropy(load_file(str(result.checkpoint))) < 0.75 * before
    assert read_segcli_metadata(result.checkpoint).extra["loss"] == "ohem"


def test_weights_of_another_model_initialise_the_shared_tensors(tiny_data, tmp_path):
    """`segcli train --model fcn32s --weights <an fcn8s checkpoint>`: backbone and classifier copied."""
    from safetensors.torch import load_file

    from segcli.checkpoints.loading import read_segcli_metadata
    from segcli.checkpoints.saving import save_segcli_checkpoint
    from segcli.checkpoints.record import CheckpointRecord
    from segcli.models import build_model

    torch.manual_seed(4)
    fcn8s = build_model("fcn8s", len(SYNTH_CLASSES), width=0.0625)
    record = CheckpointRecord(name="fcn8s-tiny", model="fcn8s", dataset="segcli-synth", categories=SYNTH_CLASSES,
                              filename="fcn8s-tiny.safetensors", model_kwargs=(("width", 0.0625),))
    source_file = save_segcli_checkpoint(tmp_path / "fcn8s-tiny.safetensors", fcn8s, record)
    assert source_model(str(source_file), "fcn32s") == "fcn8s"
    source = load_file(str(source_file))
    result = train(config(tiny_data, tmp_path, model="fcn32s", weights=str(source_file), iters=1, lr=1e-12,
                          model_kwargs={"width": 0.0625}))
    tuned = load_file(str(result.checkpoint))
    shared = [k for k in tuned if k in source and tuned[k].shape == source[k].shape]
    assert any(k.startswith("conv1_1") for k in shared) and "score_fr.weight" in shared
    for key in shared:
        torch.testing.assert_close(tuned[key].float(), source[key].half().float(), atol=1e-6, rtol=0)
    assert "upscore.weight" in tuned and "upscore.weight" not in shared  # FCN-32s's own 64x64 upsampling
    assert read_segcli_metadata(result.checkpoint).record.model == "fcn32s"


def test_training_auto_precision_is_fp32_on_the_cpu_and_bf16_stays_available():
    from segcli.device import plan_execution

    assert training_plan("cpu", "auto").precision == "fp32"
    assert training_plan("cpu", "bf16").precision == "bf16"
    assert training_plan("cpu", "fp32").precision == "fp32"
    # inference keeps its own auto (bf16 where the CPU has it)
    assert plan_execution("cpu", "auto").precision in ("bf16", "fp32")


def test_start_message_never_prints_an_empty_options_dict(tiny_data, tmp_path):
    from io import StringIO

    from rich.console import Console

    log = StringIO()
    train(config(tiny_data, tmp_path, iters=1), model_factory=TinySegmenter, console=Console(file=log, width=300))
    assert "training deeplabv1 on 8 images, 1 iterations" in log.getvalue()
    assert "{}" not in log.getvalue()


def test_weights_of_another_layout_copy_the_leading_tensors_both_share_in_order():
    """FCN's conv1_1 ... against DeepLab v1's features.N: no shared name, the same backbone first."""
    from segcli.training.starting import copy_matching_weights

    torch.manual_seed(0)
    source = nn.ModuleDict({"conv1_1": nn.Conv2d(3, 4, 3), "conv1_2": nn.Conv2d(4, 4, 3), "fc6": nn.Conv2d(4, 16, 7)})
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 8, 3))
    kept = copy_matching_weights(target, source, "source.safetensors")
    assert torch.equal(target[0].weight, source["conv1_1"].weight) and torch.equal(target[2].bias, source["conv1_2"].bias)
    assert kept == ["3.bias", "3.weight"]  # the first layer that differs and everything after it start fresh
    with pytest.raises(CheckpointError, match="no tensor fits"):
        copy_matching_weights(nn.Sequential(nn.Conv2d(1, 2, 1)), source, "source.safetensors")
