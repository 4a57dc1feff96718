"""Fully connected (dense) CRF post-processing through pydensecrf, as in DeepLab v1/v2.

The reference path (`dense_crf(probs, image, params)`) runs the CRF over every label at full
resolution. Two opt-in shortcuts trade a little fidelity for speed, since the cost grows
linearly with pixels times labels: `label_subset="auto"` drops labels that are nowhere
likely, and `max_side` runs the CRF on a downscaled copy of big images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from PIL import Image

from segcli.errors import MissingDependencyError, SegcliError, UnknownNameError

INSTALL_HINT = "the dense CRF needs pydensecrf: pip install pydensecrf2 (or: make install-crf)"
PROBABILITY_FLOOR = 1e-8     # -log(0) would be infinite; log(1e-8) = -18.4
SUBSET_THRESHOLD = 1e-3      # label_subset="auto" keeps labels above this probability somewhere


class CRFParameterError(SegcliError, ValueError):
    """CRF settings outside their valid range."""


@dataclass(frozen=True)
class CRFParams:
    """Mean-field iterations and kernel settings of the dense CRF.

    Defaults: DeepLab v2 (ResNet-101, PASCAL VOC), the values its released CRF config uses
    (see ../shared/FACTS.md section 5).
    """

    iterations: int = 10            # mean-field iterations
    bilateral_weight: float = 4.0   # appearance kernel compatibility (w1)
    bilateral_xy: float = 67.0      # appearance kernel spatial std, pixels (theta_alpha)
    bilateral_rgb: float = 3.0      # appearance kernel colour std, 0..255 units (theta_beta)
    gaussian_weight: float = 3.0    # smoothness kernel compatibility (w2)
    gaussian_xy: float = 1.0        # smoothness kernel spatial std, pixels (theta_gamma)

    def __post_init__(self) -> None:
        if int(self.iterations) != self.iterations or self.iterations < 1:
            raise CRFParameterError(f"CRF iterations must be a whole number >= 1, got {self.iterations}")
        for name in ("bilateral_xy", "bilateral_rgb", "gaussian_xy"):
            if not getattr(self, name) > 0:
                raise CRFParameterError(f"CRF {name} must be > 0, got {getattr(self, name)}")
        for name in ("bilateral_weight", "gaussian_weight"):
            if not getattr(self, name) >= 0:
                raise CRFParameterError(f"CRF {name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_preset(cls, name: str) -> "CRFParams":
        """A named preset from CRF_PRESETS."""
        if name not in CRF_PRESETS:
            raise UnknownNameError(f"unknown CRF preset {name!r}: choose one of {', '.join(CRF_PRESETS)}")
        return CRF_PRESETS[name]


# name -> settings; sources in ../shared/FACTS.md section 5
CRF_PRESETS: dict[str, CRFParams] = {
    "deeplab-v2": CRFParams(),  # DeepLab v2, ResNet-101 on VOC
    "deeplab-v1": CRFParams(iterations=10, bilateral_weight=4, bilateral_xy=121, bilateral_rgb=5,
                            gaussian_weight=3, gaussian_xy=3),  # DeepLab v1 (VGG16 LargeFOV)
    "pydensecrf-readme": CRFParams(iterations=5, bilateral_weight=10, bilateral_xy=80, bilateral_rgb=13,
                                   gaussian_weight=3, gaussian_xy=3),  # pydensecrf README example
}


def _import_densecrf():
    try:
        import pydensecrf.densecrf as densecrf
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    return densecrf


def crf_available() -> bool:
    """True when pydensecrf can be imported."""
    try:
        _import_densecrf()
    except MissingDependencyError:
        return False
    return True


def _check_inputs(probabilities: np.ndarray, image_rgb: np.ndarray) -> None:
    if probabilities.ndim != 3 or not np.issubdtype(probabilities.dtype, np.floating):
        raise ValueError(
            f"probabilities must be a float array [classes, H, W], got {probabilities.dtype} {probabilities.shape}"
        )
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image_rgb.dtype} {image_rgb.shape}")
    if probabilities.shape[1:] != image_rgb.shape[:2]:
        raise ValueError(
            f"probabilities are {probabilities.shape[1]}x{probabilities.shape[2]} but the image is "
            f"{image_rgb.shape[0]}x{image_rgb.shape[1]} (H x W): upsample the probabilities to the image size"
        )
    if probabilities.shape[0] < 1 or probabilities.shape[1] < 1 or probabilities.shape[2] < 1:
        raise ValueError(f"probabilities must have at least one class and one pixel, got {probabilities.shape}")
    if not np.isfinite(probabilities).all():
        raise ValueError("probabilities contain NaN or infinity")
    if probabilities.min() < -1e-6 or probabilities.max() > 1 + 1e-3:
        raise ValueError("probabilities must lie in [0, 1]: pass softmax probabilities, not logits")


def dense_crf(
    probabilities: np.ndarray,
    image_rgb: np.ndarray,
    params: CRFParams = CRFParams(),
    *,
    label_subset: None | str | Sequence[int] = None,
    subset_threshold: float = SUBSET_THRESHOLD,
    max_side: int | None = None,
) -> np.ndarray:
    """Refine per-pixel class probabilities [C, H, W] with a dense CRF; returns float32 [C, H, W].

    label_subset:
      None (default, the reference): every label takes part.
      "auto": only labels whose probability exceeds `subset_threshold` somewhere in the image;
        the CRF cost is linear in labels, so 3 present labels out of 21 run ~7x faster. Pruned
        labels get probability 0; the kept ones are renormalised first, so results differ from
        the full CRF only where the pruned labels' tiny mass would have tipped a pixel.
      a sequence of class indices: exactly those labels.
    max_side: when the longer image side exceeds it, the CRF runs on a copy downscaled to that
      side (probabilities and image resized, spatial kernel widths scaled alike) and the result
      is upsampled bilinearly. Cost falls with the square of the scale; the price is that
      boundaries are only as precise as the reduced grid (the CRF cannot snap them to image
      edges finer than one reduced pixel), and thin structures below that size may vanish.
    """
    probabilities = np.asarray(probabilities)
    image_rgb = np.asarray(image_rgb)
    _check_inputs(probabilities, image_rgb)
    n_classes = probabilities.shape[0]
    keep = _labels_to_keep(probabilities, label_subset, subset_threshold)
    result = np.zeros(probabilities.shape, dtype=np.float32)
    if len(keep) == 1:  # a single label wins everywhere; no inference needed
        result[keep[0]] = 1.0
        return result
    subset = probabilities if len(keep) == n_classes else probabilities[keep]
    subset = np.clip(subset.astype(np.float32), 0.0, None)
    subset = subset / np.maximum(subset.sum(axis=0, keepdims=True), PROBABILITY_FLOOR)

    height, width = image_rgb.shape[:2]
    if max_side is not None and max(height, width) > max_side:
        refined = _dense_crf_downscaled(subset, image_rgb, params, max_side)
    else:
        refined = _dense_crf_full(subset, image_rgb, params)
    result[keep] = refined
    return result


def _labels_to_keep(probabilities: np.ndarray, label_subset, threshold: float) -> np.ndarray:
    n_classes = probabilities.shape[0]
    if label_subset is None:
        return np.arange(n_classes)
    if isinstance(label_subset, str):
        if label_subset != "auto":
            raise ValueError(f"label_subset must be None, 'auto' or class indices, got {label_subset!r}")
        peak = probabilities.reshape(n_classes, -1).max(axis=1)
        keep = np.flatnonzero(peak > threshold)
        return keep if len(keep) else np.array([int(np.argmax(peak))])
    keep = np.unique(np.asarray(list(label_subset), dtype=np.int64))
    if len(keep) == 0 or keep.min() < 0 or keep.max() >= n_classes:
        raise ValueError(f"label_subset must name classes in 0..{n_classes - 1}, got {list(label_subset)}")
    return keep


def _dense_crf_full(probabilities: np.ndarray, image_rgb: np.ndarray, params: CRFParams) -> np.ndarray:
    """The pydensecrf recipe: unary -log p, a smoothness and an appearance kernel, mean field."""
    densecrf = _import_densecrf()
    n_classes, height, width = probabilities.shape
    crf = densecrf.DenseCRF2D(width, height, n_classes)
    unary = -np.log(np.clip(probabilities, PROBABILITY_FLOOR, 1.0)).reshape(n_classes, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=params.gaussian_xy, compat=params.gaussian_weight)
    crf.addPairwiseBilateral(
        sxy=params.bilateral_xy, srgb=params.bilateral_rgb,
        rgbim=np.require(image_rgb, np.uint8, ["C", "W"]), compat=params.bilateral_weight,
    )
    refined = np.asarray(crf.inference(int(params.iterations)), dtype=np.float32)
    return refined.reshape(n_classes, height, width)


def _resize_planes(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of each [H, W] float plane to size (width, height); antialiased when shrinking."""
    return np.stack([
        np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), "F").resize(size, Image.BILINEAR))
        for plane in planes
    ])


def _dense_crf_downscaled(
    probabilities: np.ndarray, image_rgb: np.ndarray, params: CRFParams, max_side: int
) -> np.ndarray:
    height, width = image_rgb.shape[:2]
    scale = max_side / max(height, width)
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small_image = np.array(Image.fromarray(image_rgb, "RGB").resize(small_size, Image.BILINEAR))
    small_probabilities = np.clip(_resize_planes(probabilities, small_size), 0.0, None)
    small_probabilities /= np.maximum(small_probabilities.sum(axis=0, keepdims=True), PROBABILITY_FLOOR)
    # the kernels should cover the same part of the scene at the reduced size
    small_params = replace(
        params, bilateral_xy=params.bilateral_xy * scale, gaussian_xy=params.gaussian_xy * scale
    )
    refined_small = _dense_crf_full(small_probabilities, small_image, small_params)
    refined = np.clip(_resize_planes(refined_small, (width, height)), 0.0, None)
    refined /= np.maximum(refined.sum(axis=0, keepdims=True), PROBABILITY_FLOOR)
    return refined.astype(np.float32)
