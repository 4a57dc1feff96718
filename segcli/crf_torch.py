"""The dense CRF in torch: mean-field inference on whatever device the tensors live on.

The model of Krahenbuhl and Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge
Potentials" (NeurIPS 2011), as pydensecrf's DenseCRF2D computes it (densecrf/src/densecrf.cpp,
pairwise.cpp in github.com/lucasb-eyer/pydensecrf): unary -log p; Potts compatibility; a
smoothness kernel on (x, y) / gaussian_xy with weight gaussian_weight and an appearance kernel on
(x / bilateral_xy, y / bilateral_xy, r, g, b / bilateral_rgb) with weight bilateral_weight, both
filtered on a permutohedral lattice (segcli/permutohedral.py) and normalised symmetrically
(pydensecrf's default NORMALIZE_SYMMETRIC: n = 1 / sqrt(K 1), message n * K(n * Q)). Each
iteration: Q <- softmax(log p + sum_k w_k n_k K_k(n_k Q)), starting from Q = softmax(log p) = p.

Settings arrive as any object with CRFParams' fields (segcli.crf.CRFParams). Float32 throughout.
The lattices depend on the image only: built once, reused by every iteration and every label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segcli.permutohedral import Lattice

PROBABILITY_FLOOR = 1e-8  # as segcli/crf_meanfield.py: -log(0) would be infinite


@dataclass(frozen=True)
class Kernel:
    """One pairwise term: its lattice, its symmetric normalisation [N, 1] and its weight."""

    lattice: Lattice
    norm: torch.Tensor
    weight: float

    @classmethod
    def build(cls, features: torch.Tensor, weight: float) -> "Kernel":
        lattice = Lattice.build(features)
        ones = torch.ones((features.shape[0], 1), dtype=torch.float32, device=features.device)
        norm = torch.rsqrt(lattice.filter(ones) + 1e-20)
        return cls(lattice, norm, float(weight))

    def message(self, q: torch.Tensor) -> torch.Tensor:
        """w n K(n Q) for all labels at once (Q: [N, C])."""
        return self.lattice.filter(q * self.norm) * (self.norm * self.weight)


def image_features(image: torch.Tensor, params) -> tuple[torch.Tensor, torch.Tensor]:
    """The smoothness [N, 2] and appearance [N, 5] features of an [H, W, 3] image, pixel order
    row-major (x fastest), as DenseCRF2D builds them: x / sxy, y / sxy[, r / srgb, g / srgb, b / srgb]."""
    height, width = image.shape[:2]
    device = image.device
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                            torch.arange(width, dtype=torch.float32, device=device), indexing="ij")
    position = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    smooth = position / torch.tensor(float(params.gaussian_xy), dtype=torch.float32)
    colour = image.reshape(-1, 3).to(torch.float32) / torch.tensor(float(params.bilateral_rgb), dtype=torch.float32)
    appearance = torch.cat([position / torch.tensor(float(params.bilateral_xy), dtype=torch.float32), colour], 1)
    return smooth, appearance


@dataclass(frozen=True)
class DenseCRF:
    """The pairwise terms of one image; `inference` runs mean field for any probabilities on it."""

    kernels: tuple[Kernel, ...]
    shape: tuple[int, int]

    @classmethod
    def build(cls, image: torch.Tensor, params) -> "DenseCRF":
        """image: uint8 [H, W, 3] on the device the CRF should run on."""
        smooth, appearance = image_features(image, params)
        kernels = tuple(Kernel.build(features, weight) for features, weight in
                        ((smooth, params.gaussian_weight), (appearance, params.bilateral_weight)) if weight > 0)
        return cls(kernels, (int(image.shape[0]), int(image.shape[1])))

    def inference(self, probabilities: torch.Tensor, iterations: int) -> torch.Tensor:
        """probabilities [C, H, W] (softmax) -> refined float32 [C, H, W] after `iterations` steps."""
        n_classes = probabilities.shape[0]
        log_p = torch.log(probabilities.to(torch.float32).reshape(n_classes, -1).t().clamp(PROBABILITY_FLOOR, 1.0))
        q = torch.softmax(log_p, 1)
        for _ in range(int(iterations)):
            logits = log_p.clone()
            for kernel in self.kernels:
                logits += kernel.message(q)
            q = torch.softmax(logits, 1)
        return q.t().reshape(n_classes, *self.shape).contiguous()


def dense_crf_torch(probabilities, image_rgb, params, device: str | torch.device | None = None) -> torch.Tensor:
    """The full dense CRF (every label, full size, params.iterations) in torch. probabilities: float
    [C, H, W], image_rgb: uint8 [H, W, 3], numpy arrays or tensors; runs on `device` (default: the
    probabilities' device when a tensor, else the CPU). Returns a float32 [C, H, W] tensor there."""
    if device is None:
        device = probabilities.device if isinstance(probabilities, torch.Tensor) else torch.device("cpu")
    probabilities = torch.as_tensor(probabilities, device=device)
    image = torch.as_tensor(np.ascontiguousarray(image_rgb) if isinstance(image_rgb, np.ndarray) else image_rgb,
                            device=device)
    with torch.no_grad():
        return DenseCRF.build(image, params).inference(probabilities, int(params.iterations))
