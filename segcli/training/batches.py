"""Batch sources for `fit`: `batches(start)` yields (inputs, targets) for iterations start, start+1, ...

Any object with that method will do (e.g. cached encoder features and masks for a decoder).
Both sources here draw iteration i's samples from `batch_indices(seed, i)`, so a resumed run sees
the batches an uninterrupted one would have.

- `LoaderBatches`: the dataset's own CPU augmentation (PIL), in DataLoader worker processes.
- `DeviceBatches`: the whole training set on the device as uint8, augmented there (scale, crop,
  flip by index arithmetic and `grid_sample`): no per-sample CPU work to hold a GPU back.
"""

from __future__ import annotations

import itertools
import signal
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from segcli.palettes import IGNORE_INDEX
from segcli.training.schedule import batch_indices


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which saves the state."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _PlanSampler:
    """Iteration start, start+1, ...: that iteration's dataset items (index, augmentation seed)."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int) -> None:
        self.num_samples, self.batch_size, self.seed, self.start = num_samples, batch_size, seed, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_epoch = max(1, self.num_samples // self.batch_size)
        for iteration in itertools.count(self.start):
            yield batch_indices(self.num_samples, self.batch_size, self.seed, iteration, per_epoch)


class LoaderBatches:
    """Augmented crops from a `SegmentationDataset`, made on the CPU (`workers` processes)."""

    def __init__(self, dataset, batch_size: int, seed: int, workers: int = 0, pin_memory: bool = False) -> None:
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.workers, self.pin_memory = workers, pin_memory

    def batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=_PlanSampler(len(self.dataset), self.batch_size, self.seed, start),
            num_workers=self.workers, pin_memory=self.pin_memory,
            worker_init_fn=_ignore_stop_signals if self.workers else None,
        )
        return iter(loader)


class DeviceBatches:
    """Random scale, pad-and-crop and horizontal flip of same-size images held on `device`.

    The augmentation of `SegmentationDataset` (bilinear image, nearest mask, image padded with 0,
    mask with 255), done with tensor arithmetic: bilinear sampling does not low-pass filter when it
    shrinks as PIL does, the only difference. Iteration i draws its parameters from (seed, i).
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, preprocessing, batch_size: int, seed: int,
                 device: torch.device, crop: tuple[int, int] | None = None,
                 scale_range: tuple[float, float] = (0.5, 2.0), flip: bool = True) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)   # [N, H, W, 3] uint8
        self.masks = torch.from_numpy(np.ascontiguousarray(masks)).to(device)     # [N, H, W] uint8
        self.size = tuple(int(side) for side in masks.shape[1:3])
        self.crop = tuple(crop) if crop else self.size
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.scale_range, self.flip = scale_range, flip
        self.bgr = preprocessing.channel_order == "BGR"
        scale = preprocessing.input_scale / 255.0
        std = torch.tensor(preprocessing.std, dtype=torch.float32)
        # engine.preprocess: ((pixel / 255 * input_scale) - mean) / std, as one multiply-add
        self.gain = (scale / std).view(1, 3, 1, 1).to(device)
        self.offset = (-torch.tensor(preprocessing.mean, dtype=torch.float32) / std).view(1, 3, 1, 1).to(device)

    @classmethod
    def from_dataset(cls, dataset, batch_size: int, seed: int, device: torch.device) -> "DeviceBatches | None":
        """The dataset's images on `device`; None when they differ in size or need resizing first."""
        if dataset.preprocessing.resize_shorter or len({mask.shape for mask in dataset.masks}) != 1:
            return None
        return cls(np.stack(dataset.images), np.stack(dataset.masks), dataset.preprocessing, batch_size, seed,
                   device, dataset.crop, dataset.scale_range, dataset.flip)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for iteration in itertools.count(start):
            yield self.batch(iteration)

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Iteration `iteration`'s normalised [B, 3, h, w] crops and [B, h, w] int64 masks."""
        items = batch_indices(len(self), self.batch_size, self.seed, iteration)
        index = torch.tensor([item for item, _ in items], device=self.device)
        rows, columns, valid = self._source_coordinates(self._draw(iteration, len(items)))
        height, width = self.size
        # bilinear: grid_sample's normalised coordinates (align_corners=False) of the source points
        grid = torch.stack(torch.broadcast_tensors(
            (2 * columns[:, None, :] + 1) / width - 1, (2 * rows[:, :, None] + 1) / height - 1), dim=-1)
        pixels = self.images[index].permute(0, 3, 1, 2).float()
        if self.bgr:
            pixels = pixels.flip(1)
        sampled = F.grid_sample(pixels, grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
        sampled = sampled * valid[:, None]                      # padding is pixel value 0, as in the dataset
        images = sampled * self.gain + self.offset
        # nearest (PIL's rule: source = floor((target + 0.5) * scale)); padding is ignored (255)
        near_rows = rows.add(0.5).floor().long().clamp(0, height - 1)
        near_columns = columns.add(0.5).floor().long().clamp(0, width - 1)
        masks = self.masks[index[:, None, None], near_rows[:, :, None], near_columns[:, None, :]].long()
        masks = torch.where(valid, masks, torch.full_like(masks, IGNORE_INDEX))
        return images.contiguous(), masks

    def _draw(self, iteration: int, count: int) -> dict[str, np.ndarray]:
        """Per-sample scale, scaled size, crop corner and flip, from (seed, iteration) alone."""
        rng = np.random.default_rng([self.seed, iteration, 0x5CA1E])
        height, width = self.size
        crop_h, crop_w = self.crop
        scales = rng.uniform(*self.scale_range, size=count)
        new_h = np.maximum(1, np.round(height * scales)).astype(np.int64)
        new_w = np.maximum(1, np.round(width * scales)).astype(np.int64)
        top = rng.integers(0, np.maximum(new_h, crop_h) - crop_h + 1)
        left = rng.integers(0, np.maximum(new_w, crop_w) - crop_w + 1)
        flips = rng.random(count) < 0.5 if self.flip else np.zeros(count, dtype=bool)
        return {"new_h": new_h, "new_w": new_w, "top": top, "left": left, "flip": flips}

    def _source_coordinates(self, drawn: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source-pixel centres (minus 0.5) of every crop row and column, and which crop pixels are inside."""
        height, width = self.size
        crop_h, crop_w = self.crop

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, device=self.device)

        ys = tensor(drawn["top"])[:, None] + torch.arange(crop_h, device=self.device)       # scaled-image rows
        xs = torch.arange(crop_w, device=self.device).expand(len(drawn["flip"]), crop_w)
        xs = torch.where(tensor(drawn["flip"])[:, None], crop_w - 1 - xs, xs) + tensor(drawn["left"])[:, None]
        new_h, new_w = tensor(drawn["new_h"])[:, None], tensor(drawn["new_w"])[:, None]
        valid = (ys < new_h)[:, :, None] & (xs < new_w)[:, None, :]
        # (2y + 1) * h / (2 h'): exact at the ties (target centres that land on a source edge), as PIL
        rows = (2 * ys + 1) * height / (2 * new_h).double() - 0.5
        columns = (2 * xs + 1) * width / (2 * new_w).double() - 0.5
        return rows, columns, valid
