"""What each iteration sees: its learning rate (linear warm-up, then poly decay) and its samples.

Both are pure functions of (seed, iteration, total), so a run resumed from a state file continues
exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator

import numpy as np
import torch


def poly_factor(iteration: int, total: int, power: float = 0.9) -> float:
    """The poly schedule: lr = base * (1 - it / total) ** power."""
    return max(0.0, 1.0 - iteration / total) ** power


class PolySchedule:
    """Sets each parameter group's learning rate per iteration: warm-up, then poly decay to 0 at `total`.

    `total` may change while training (a time budget fixes it from the measured speed); the rate
    at an iteration depends only on (iteration, total), so nothing else needs saving.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, power: float = 0.9, warmup: int = 0) -> None:
        self.optimizer = optimizer
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.total, self.power, self.warmup = total, power, warmup

    def factor(self, iteration: int) -> float:
        ramp = min(1.0, (iteration + 1) / self.warmup) if self.warmup > 0 else 1.0
        return ramp * poly_factor(iteration, self.total, self.power)

    def apply(self, iteration: int) -> float:
        """Set the rates for `iteration` (0-based); returns the first group's."""
        factor = self.factor(iteration)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "power": self.power, "warmup": self.warmup, "base_lrs": list(self.base_lrs)}


def batch_plan(num_samples: int, batch_size: int, seed: int, start: int, total: int) -> Iterator[list[tuple[int, int]]]:
    """Batches of (sample index, augmentation seed) for iterations start..total-1."""
    per_epoch = max(1, num_samples // batch_size)
    for iteration in range(start, total):
        yield batch_indices(num_samples, batch_size, seed, iteration, per_epoch)


@functools.lru_cache(maxsize=4)
def _epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    order.flags.writeable = False  # shared by every iteration of the epoch
    return order


def batch_indices(num_samples: int, batch_size: int, seed: int, iteration: int,
                  per_epoch: int | None = None) -> list[tuple[int, int]]:
    """One iteration's (sample index, augmentation seed) pairs: every sample once per epoch."""
    per_epoch = per_epoch or max(1, num_samples // batch_size)
    epoch, position = divmod(iteration, per_epoch)
    order = _epoch_order(num_samples, seed, epoch)
    if num_samples < batch_size:
        order = np.resize(order, batch_size)
    chosen = order[position * batch_size:(position + 1) * batch_size]
    return [(int(index), int(seed * 1_000_003 + iteration * batch_size + slot) % 2**63)
            for slot, index in enumerate(chosen)]
