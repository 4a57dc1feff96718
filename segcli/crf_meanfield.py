"""Mean-field building blocks over pydensecrf: the image-grid CRF, a CRF over any set of pixels,
warm-started updates, and the array helpers the fast CRF needs (segcli.crf decides the policy).

Kernel settings arrive as any object with CRFParams' fields (iterations, bilateral_weight,
bilateral_xy, bilateral_rgb, gaussian_weight, gaussian_xy).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from segcli.errors import MissingDependencyError

PROBABILITY_FLOOR = 1e-8  # -log(0) would be infinite; log(1e-8) = -18.4


def import_densecrf(install_hint: str):
    try:
        import pydensecrf.densecrf as densecrf
    except ImportError as exc:
        raise MissingDependencyError(install_hint) from exc
    return densecrf


def unary_energy(probabilities: np.ndarray) -> np.ndarray:
    """-log p as the C-contiguous float32 [C, H*W] (or [C, N]) matrix pydensecrf takes."""
    flat = probabilities.reshape(probabilities.shape[0], -1)
    return np.ascontiguousarray(-np.log(np.clip(flat, PROBABILITY_FLOOR, 1.0)), dtype=np.float32)


def grid_crf(densecrf, probabilities: np.ndarray, image_rgb: np.ndarray, params, scale: float = 1.0):
    """pydensecrf's DenseCRF2D recipe; `scale` < 1 shrinks the spatial kernel widths for a reduced grid
    (the smoothness kernel to no less than one pixel: narrower, it reaches no neighbour there, and a
    lattice that fine costs more than the rest of the reduced CRF)."""
    n_classes, height, width = probabilities.shape
    crf = densecrf.DenseCRF2D(width, height, n_classes)
    crf.setUnaryEnergy(unary_energy(probabilities))
    smooth_xy = params.gaussian_xy if scale == 1.0 else max(params.gaussian_xy * scale, 1.0)
    crf.addPairwiseGaussian(sxy=smooth_xy, compat=params.gaussian_weight)
    crf.addPairwiseBilateral(sxy=params.bilateral_xy * scale, srgb=params.bilateral_rgb,
                             rgbim=np.require(image_rgb, np.uint8, ["C"]), compat=params.bilateral_weight)
    return crf


def pixel_set_crf(densecrf, probabilities: np.ndarray, image_rgb: np.ndarray, params, indices: np.ndarray):
    """The same CRF restricted to the pixels at flat `indices`: the features DenseCRF2D computes
    (x/sxy, y/sxy[, r/srgb, g/srgb, b/srgb]), for those pixels only; on every pixel it equals grid_crf."""
    n_classes, height, width = probabilities.shape
    ys, xs = np.divmod(indices, width)
    crf = densecrf.DenseCRF(len(indices), n_classes)
    crf.setUnaryEnergy(unary_energy(probabilities.reshape(n_classes, -1)[:, indices]))
    position = np.stack([xs, ys]).astype(np.float32)
    smooth = np.ascontiguousarray(position / np.float32(params.gaussian_xy), dtype=np.float32)
    crf.addPairwiseEnergy(smooth, compat=params.gaussian_weight)
    colour = image_rgb.reshape(-1, 3)[indices].T.astype(np.float32) / np.float32(params.bilateral_rgb)
    appearance = np.concatenate([position / np.float32(params.bilateral_xy), colour]).astype(np.float32)
    crf.addPairwiseEnergy(np.ascontiguousarray(appearance), compat=params.bilateral_weight)
    return crf


def warm_steps(crf, start: np.ndarray, steps: int) -> np.ndarray:
    """`steps` mean-field updates starting from the distribution `start` [C, N] (not from the unary)."""
    from pydensecrf import eigen

    _, scratch, messages = crf.startInference()
    q = eigen.matrixXf(np.ascontiguousarray(start, dtype=np.float32))
    for _ in range(steps):
        crf.stepInference(q, scratch, messages)
    return np.asarray(q, dtype=np.float32)


def normalised(planes: np.ndarray) -> np.ndarray:
    planes = np.clip(planes, 0.0, None)
    return (planes / np.maximum(planes.sum(axis=0, keepdims=True), PROBABILITY_FLOOR)).astype(np.float32)


def resize_planes(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of each [H, W] float plane to size (width, height); antialiased when shrinking."""
    return np.stack([
        np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), "F").resize(size, Image.BILINEAR))
        for plane in planes
    ])


def resize_image(image_rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.array(Image.fromarray(np.ascontiguousarray(image_rgb), "RGB").resize(size, Image.BILINEAR))


def log_margin(probabilities: np.ndarray) -> np.ndarray:
    """log(best / runner-up) per pixel: how far the winner is ahead."""
    if probabilities.shape[0] == 1:
        return np.full(probabilities.shape[1:], np.inf, np.float32)
    best, second = probabilities[0].copy(), np.zeros(probabilities.shape[1:], probabilities.dtype)
    for plane in probabilities[1:]:  # one pass per label: faster than sorting along the label axis
        second = np.maximum(second, np.minimum(best, plane))
        best = np.maximum(best, plane)
    return np.log(np.clip(best, PROBABILITY_FLOOR, None)) - np.log(np.clip(second, PROBABILITY_FLOOR, None))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of a boolean [H, W] mask by `radius` pixels (summed-area tables, no scipy)."""
    if radius <= 0:
        return mask.copy()
    out = mask
    for axis in (0, 1):
        counts = np.cumsum(out, axis=axis, dtype=np.int32)
        padded = np.concatenate([np.zeros_like(counts.take([0], axis=axis)), counts], axis=axis)
        length = out.shape[axis]
        upper = np.minimum(np.arange(length) + radius + 1, length)
        lower = np.maximum(np.arange(length) - radius, 0)
        out = (padded.take(upper, axis=axis) - padded.take(lower, axis=axis)) > 0
    return out
