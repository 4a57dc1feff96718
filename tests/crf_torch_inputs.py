"""Realistic CRF inputs for the torch CRF tests: a synthetic scene (segcli.data.synth) and the softmax
of a blurred, noisy label map over it, so the CRF has pixels to move."""

from __future__ import annotations

import numpy as np
import torch

from segcli.data.synth import make_scene


def blurred_softmax(truth: np.ndarray, n_classes: int, confidence: float, seed: int) -> np.ndarray:
    """softmax(confidence * (box-blurred one-hot of truth + noise)) as float32 [C, H, W]."""
    rng = np.random.default_rng(seed)
    onehot = torch.tensor(np.eye(n_classes, dtype=np.float32)[truth % n_classes]).permute(2, 0, 1)
    blurred = torch.nn.functional.avg_pool2d(onehot[None], 9, stride=1, padding=4, count_include_pad=False)[0]
    noise = torch.tensor(rng.normal(0.0, 0.35, blurred.shape), dtype=torch.float32)
    return torch.softmax(confidence * (blurred + noise), 0).numpy()


def scene_case(height: int, width: int, n_classes: int, confidence: float, seed: int = 0):
    """(probabilities [C, H, W], image [H, W, 3] uint8) for a synthetic scene of that size."""
    scene = make_scene(5, seed, (height, width))
    return blurred_softmax(scene.mask.astype(np.int64), n_classes, confidence, seed), scene.image
