"""`--precision auto` on CUDA: the execution policy's trial on the run's first batch, before the lanes start.

The policy (segcli/execution_policy.py) times the bare fp32 model and each precision x memory
format on a batch of the first image's size and keeps the fastest; the engine then runs the whole
folder in that configuration (images of other sizes too: one trial per run, the cache keeps it).
An explicit --precision is never second-guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from segcli.execution_policy import (
    Candidate, PolicyCache, PolicyChoice, PolicyKey, Timer, candidates_for, choose_execution, median_timer,
)

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine


def policy_applies(engine: "SegmentationEngine") -> bool:
    """The policy decides only `--precision auto` on a CUDA device."""
    return engine.options.precision == "auto" and engine.plan.device.type == "cuda"


def checkpoint_identity(engine: "SegmentationEngine") -> str:
    """The checkpoint's published SHA-256 when it has one, else its name ("random" for random weights)."""
    return engine.record.sha256 or engine.record.name


def tune_engine(engine: "SegmentationEngine", image_rgb: np.ndarray, batch_size: int,
                cache: PolicyCache | None = None, timer: Timer = median_timer,
                candidates: Sequence[Candidate] | None = None) -> PolicyChoice:
    """Choose the engine's precision and memory format on `batch_size` copies of `image_rgb` (cached)."""
    from segcli.engine import preprocess

    device = engine.plan.device
    example = preprocess(image_rgb, engine.record.preprocessing)
    batch = example.expand(batch_size, *example.shape[1:]).contiguous()
    height, width = batch.shape[-2:]
    key = PolicyKey.for_run(engine.record.model, checkpoint_identity(engine), height, width, batch_size, device)
    given_layout = engine.options.channels_last
    options = list(candidates or candidates_for(device))
    if given_layout is not None:  # --channels-last / --no-channels-last given: only that layout
        options = [c for c in options if c.channels_last == given_layout or c == options[0]]
    choice = choose_execution(engine.model, batch, device, key, cache if cache is not None else PolicyCache(),
                              timer, options)
    engine.plan = choice.candidate.plan(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return choice
