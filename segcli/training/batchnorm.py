"""Precise BatchNorm: running statistics recomputed for a model's final weights."""

from __future__ import annotations

import torch
from torch import nn

from segcli.training.schedule import batch_plan


DEFAULT_IMAGES = 400  # precise BN (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021) needs a few hundred


def recalibration_batches(requested: int | None, num_samples: int, batch_size: int) -> int:
    """Batches to recompute over: `requested` (default: DEFAULT_IMAGES images' worth), at most one pass.

    The statistics are a cumulative average over whole images at scale 1: a second pass over the same
    images adds the same numbers again and changes nothing but the time taken.
    """
    one_pass = max(1, num_samples // batch_size)
    wanted = -(-DEFAULT_IMAGES // batch_size) if requested is None else requested
    return min(wanted, one_pass)


def recalibrate_batch_norm(model: nn.Module, dataset, plan, batch_size: int, seed: int,
                           batches: int | None = None) -> tuple[int, int]:
    """Recompute every BatchNorm's running mean/variance for the model's final weights ("precise BN").

    The running averages kept during training lag behind weights that change fast (torchvision's
    MobileNetV3 uses momentum 0.01): a from-scratch model can fit its training batches (loss 0.06)
    yet predict badly in eval mode (loss 1.3) until its statistics are recomputed. Returns the
    batches and images used ((0, 0) when the model has no BatchNorm or `batches` is 0).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    batches = recalibration_batches(batches, len(dataset), batch_size)
    if not norms or batches <= 0:
        return 0, 0
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    was_training = model.training
    augmenting = getattr(dataset, "augment", None)
    if augmenting is not None:
        dataset.augment = False  # whole images at scale 1, as the model will see them in `predict`
    model.train()
    used = images_seen = 0
    try:
        with torch.no_grad():
            for plan_batch in batch_plan(len(dataset), batch_size, seed + 1, 0, batches):
                samples = [dataset[item] for item in plan_batch]
                if len(samples) < 2:
                    continue
                images = torch.stack([image for image, _ in samples]).to(plan.device)
                if plan.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                model(images)
                used += 1
                images_seen += len(samples)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)
        if augmenting is not None:
            dataset.augment = augmenting
    return used, images_seen
