"""Shared-encoder features computed once per image and cached, and the training batches drawn from them.

The encoder is frozen, so its features are a pure function of the image: computing them once
(`cache_features`) makes training the fifteen decoders cost only the decoders. `FeatureBatches`
is a batch source for `segcli.training.fit`: iteration i takes the samples of
`batch_indices(seed, i)` and a random crop aligned to the encoder's stride 16 (so the cached
features of the crop are exactly a slice of the image's), from (seed, i) alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from segcli.metrics import ConfusionMatrix
from segcli.training.schedule import batch_indices
from segcli.upsampling.encoder import ENCODER_STRIDE, LOW_LEVEL_STRIDE, SharedEncoder

CACHE_VERSION = 2
LOW_LEVEL_SCALE = ENCODER_STRIDE // LOW_LEVEL_STRIDE  # low-level cells per context cell


@dataclass
class FeatureCache:
    context: torch.Tensor                 # [N, 256, h, w] float16
    low_level: torch.Tensor               # [N, 48, 4h, 4w] float16
    positions: tuple[torch.Tensor, ...]   # 4 x [N, width, h * 2**k, w * 2**k] uint8
    masks: torch.Tensor                   # [N, 16h, 16w] uint8 (255 = ignore)
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def inputs(self, index: slice | torch.Tensor) -> dict[str, object]:
        return {"context": self.context[index].float(), "low_level": self.low_level[index].float(),
                "positions": tuple(p[index] for p in self.positions)}

    def save(self, path: Path) -> Path:
        from segcli.atomic import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        stored = {"version": CACHE_VERSION, "context": self.context, "low_level": self.low_level,
                  "positions": list(self.positions),
                  "masks": self.masks, "ids": list(self.ids)}
        atomic_write(path, lambda handle: torch.save(stored, handle))
        return path

    @classmethod
    def load(cls, path: Path) -> "FeatureCache":
        stored = torch.load(path, weights_only=True)
        if stored.get("version") != CACHE_VERSION:
            raise ValueError(f"{path} is a feature cache of another version: delete it to recompute")
        return cls(stored["context"], stored["low_level"], tuple(stored["positions"]), stored["masks"],
                   tuple(stored["ids"]))


def cache_features(encoder: SharedEncoder, pairs: Sequence[tuple[Path, Path]], num_classes: int,
                   preprocessing, batch_size: int = 16) -> FeatureCache:
    """Encoder features of each (image, mask) pair; the images must share one size, a multiple of 16."""
    from segcli.data.voc import load_mask, load_rgb
    from segcli.engine import preprocess

    contexts, low_levels, masks, ids = [], [], [], []
    positions: list[list[torch.Tensor]] = [[] for _ in range(4)]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        images = torch.cat([preprocess(load_rgb(image), preprocessing) for image, _ in chunk])
        features = encoder(images)
        contexts.append(features.context.half())
        low_levels.append(features.low_level.half())
        for stage, value in zip(positions, features.positions):
            stage.append(value)
        masks.extend(torch.from_numpy(np.array(load_mask(mask, num_classes), dtype=np.uint8)) for _, mask in chunk)
        ids.extend(Path(image).stem for image, _ in chunk)
    return FeatureCache(torch.cat(contexts), torch.cat(low_levels), tuple(torch.cat(p) for p in positions),
                        torch.stack(masks), tuple(ids))


class FeatureBatches:
    """Batches of (decoder inputs, masks) for `segcli.training.fit`, cropped from a `FeatureCache`."""

    def __init__(self, cache: FeatureCache, batch_size: int, seed: int, crop: int) -> None:
        if crop % ENCODER_STRIDE:
            raise ValueError(f"crop {crop} is not a multiple of the encoder stride {ENCODER_STRIDE}")
        self.cache, self.batch_size, self.seed = cache, batch_size, seed
        self.cells = crop // ENCODER_STRIDE
        self.grid = tuple(cache.context.shape[-2:])
        if self.cells > min(self.grid):
            raise ValueError(f"crop {crop} is larger than the cached images")

    def batches(self, start: int) -> Iterator[tuple[dict[str, object], torch.Tensor]]:
        iteration = start
        while True:
            yield self.batch(iteration)
            iteration += 1

    def batch(self, iteration: int) -> tuple[dict[str, object], torch.Tensor]:
        items = [index for index, _ in batch_indices(len(self.cache), self.batch_size, self.seed, iteration)]
        rng = np.random.default_rng([self.seed, iteration, 0xC0])
        tops = rng.integers(0, self.grid[0] - self.cells + 1, size=len(items))
        lefts = rng.integers(0, self.grid[1] - self.cells + 1, size=len(items))
        context = torch.stack([self._crop(self.cache.context[i], t, l, 1) for i, t, l in zip(items, tops, lefts)])
        low_level = torch.stack([self._crop(self.cache.low_level[i], t, l, LOW_LEVEL_SCALE)
                                 for i, t, l in zip(items, tops, lefts)])
        positions = tuple(
            torch.stack([self._crop(stage[i], t, l, 2 ** k) for i, t, l in zip(items, tops, lefts)])
            for k, stage in enumerate(self.cache.positions))
        masks = torch.stack([self._crop(self.cache.masks[i], t, l, ENCODER_STRIDE) for i, t, l in zip(items, tops, lefts)])
        return {"context": context.float(), "low_level": low_level.float(), "positions": positions}, masks.long()

    def _crop(self, tensor: torch.Tensor, top: int, left: int, scale: int) -> torch.Tensor:
        size = self.cells * scale
        return tensor[..., top * scale:top * scale + size, left * scale:left * scale + size]


@torch.no_grad()
def score_cached(decoder: torch.nn.Module, cache: FeatureCache, num_classes: int, batch_size: int = 16) -> dict:
    """mIoU and pixel accuracy of `decoder` (eval mode) on whole cached images."""
    was_training = decoder.training
    decoder.eval()
    confusion = ConfusionMatrix(num_classes)
    for start in range(0, len(cache), batch_size):
        chunk = slice(start, start + batch_size)
        labels = decoder(cache.inputs(chunk)).argmax(1)
        confusion.update(labels.numpy(), cache.masks[chunk].numpy())
    decoder.train(was_training)
    return {"miou": confusion.miou(), "pixel_acc": confusion.pixel_accuracy()}
