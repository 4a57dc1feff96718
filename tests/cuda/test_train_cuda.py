"""`segcli train` on a CUDA GPU: bf16 autocast by default, true fp32 on request, augmentation on the GPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segcli.checkpoints.loading import read_segcli_metadata
from segcli.checkpoints.record import IMAGENET_PREPROCESSING
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.data.voc import SegmentationDataset, read_split
from segcli.engine import preprocess
from segcli.training.batches import DeviceBatches
from segcli.training.config import TrainConfig
from segcli.training.run import train

pytestmark = pytest.mark.cuda


class Recorder(nn.Module):
    """A small segmenter that notes, on each training step's forward and backward, the dtype and TF32 setting."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(16, num_classes, 1))
        self.seen: list[tuple[str, torch.dtype, bool]] = []
        self.body[3].register_full_backward_hook(lambda *args: self._note("backward", torch.float32))

    def _note(self, phase: str, dtype: torch.dtype) -> None:
        self.seen.append((phase, dtype, torch.backends.cudnn.allow_tf32))

    def forward(self, x):
        out = self.body(x)
        if torch.is_grad_enabled():  # training steps only (not BatchNorm recalibration or validation)
            self._note("forward", out.dtype)
        return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda-train")
    write_synth_dataset(root, 40, seed=5, size=(64, 64), val_fraction=0.2)
    return root


def run(data, tmp_path, precision: str):
    models = []

    def factory(num_classes: int) -> nn.Module:
        models.append(Recorder(num_classes))
        return models[-1]

    config = TrainConfig(model="deeplabv1", data_dir=str(data), out=str(tmp_path / f"{precision}.safetensors"),
                         iters=60, batch_size=8, lr=5e-3, device="cuda", precision=precision, crop=(48, 48),
                         save_every=30, log_every=10)
    return train(config, model_factory=factory), models[0]


def test_auto_precision_trains_with_bf16_autocast_on_the_gpu(data, tmp_path):
    result, model = run(data, tmp_path, "auto")
    forward_dtypes = {dtype for phase, dtype, _ in model.seen if phase == "forward"}
    assert forward_dtypes == {torch.bfloat16}
    assert sum(result.losses[-10:]) < 0.8 * sum(result.losses[:10])
    extra = read_segcli_metadata(result.checkpoint).extra
    assert extra["precision"] == "bf16" and extra["device"] == "cuda" and extra["iterations"] == 60


def test_fp32_training_on_the_gpu_runs_forward_and_backward_without_tf32(data, tmp_path):
    torch.backends.cudnn.allow_tf32 = True
    result, model = run(data, tmp_path, "fp32")
    assert {(phase, dtype) for phase, dtype, _ in model.seen} == {("forward", torch.float32),
                                                                  ("backward", torch.float32)}
    assert not any(tf32 for _, _, tf32 in model.seen)
    assert torch.backends.cudnn.allow_tf32  # put back after training
    assert read_segcli_metadata(result.checkpoint).extra["precision"] == "fp32"


def test_batches_augmented_on_the_gpu_equal_the_cpus(data):
    dataset = SegmentationDataset(read_split(data, "train"), len(SYNTH_CLASSES), IMAGENET_PREPROCESSING, preprocess,
                                  crop=(48, 48), scale_range=(0.6, 1.7))
    cpu = DeviceBatches.from_dataset(dataset, batch_size=8, seed=9, device=torch.device("cpu"))
    gpu = DeviceBatches.from_dataset(dataset, batch_size=8, seed=9, device=torch.device("cuda"))
    for iteration in (0, 13):
        (cpu_images, cpu_masks), (gpu_images, gpu_masks) = cpu.batch(iteration), gpu.batch(iteration)
        torch.testing.assert_close(gpu_images.cpu(), cpu_images, rtol=1e-4, atol=1e-4)
        assert torch.equal(gpu_masks.cpu(), cpu_masks)

