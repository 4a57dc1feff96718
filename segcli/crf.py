"""Fully connected (dense) CRF post-processing through pydensecrf, as in DeepLab v1/v2.

`dense_crf(probs, image, params)` is the reference: every label, full resolution, plain
pydensecrf. `refine(probs, image, settings)` is what `--crf` runs, and the one place its
shortcuts live (segcli/crf_meanfield.py holds the pydensecrf building blocks):

- "full" (`--crf-full`): the reference.
- "fast" (default): labels that cannot win any pixel are dropped; mean field runs at half
  resolution (at most COARSE_MAX_SIDE per side for big images), capped at FAST_ITERATIONS
  unless the user gave the iterations; then BAND_ITERATIONS full-resolution updates on the
  uncertain band only (pixels whose top-2 margin is small, plus a context ring). A map uncertain
  almost everywhere (a nearly flat softmax) gets the reference iterations at full size instead.
  benchmarks/crf_speed.md has its speed and agreement with the reference.
- "torch": the reference model in torch (segcli/crf_torch.py, a permutohedral lattice in tensor ops)
  on the model's device. "fast" becomes "torch" on a CUDA device, and on the CPU when pydensecrf is
  missing (slower than pydensecrf there, but the same CRF instead of an install error).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from segcli.crf_meanfield import (PROBABILITY_FLOOR, dilate, grid_crf, import_densecrf, log_margin, normalised,
                                  pixel_set_crf, resize_image, resize_planes, warm_steps)
from segcli.errors import MissingDependencyError, SegcliError, UnknownNameError

__all__ = ["CRFParameterError", "CRFParams", "CRFRun", "CRFSettings", "METHODS", "crf_available", "dense_crf",
           "describe_plan", "method_for", "refine"]


INSTALL_HINT = "the dense CRF needs pydensecrf: pip install 'segcli[crf]' (it installs pydensecrf2)"
METHODS = ("fast", "full", "torch")
FAST_ITERATIONS = 5          # "fast" caps mean-field iterations here unless the user gave them
COARSE_MAX_SIDE = 512        # "fast": mean field at half size, and at most this many pixels per side
BAND_ITERATIONS = 2          # "fast": full-resolution updates on the uncertain band
BAND_MARGIN = 3.0            # "fast": uncertain = log(best / runner-up) below this after the coarse pass
BAND_CONTEXT = 8             # "fast": pixels of context around the band that take part in its updates
TWO_SCALE_MIN_SIDE = 256     # "fast": images with a shorter side below this run at full resolution (a half-size
                             # grid under 128 px loses thin structures: 0.894 vs 0.911 mIoU with --tta --crf on the
                             # 128-px held-out scenes; full-size iterations cost little at that size)
MAX_BAND_FRACTION = 0.25     # "fast": a map uncertain on more of the image than this gets the reference CRF


class CRFParameterError(SegcliError, ValueError):
    """CRF settings outside their valid range."""


@dataclass(frozen=True)
class CRFParams:
    """Mean-field iterations and kernel settings of the dense CRF.

    Defaults: DeepLab v2 (ResNet-101, PASCAL VOC), the values its released CRF config uses
    (Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous
    Convolution, and Fully Connected CRFs", TPAMI 2018; its released CRF settings).
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


# name -> settings: the pydensecrf README example and the DeepLab v1 / v2 papers' released settings
CRF_PRESETS: dict[str, CRFParams] = {
    "deeplab-v2": CRFParams(),  # DeepLab v2, ResNet-101 on VOC
    "deeplab-v1": CRFParams(iterations=10, bilateral_weight=4, bilateral_xy=121, bilateral_rgb=5,
                            gaussian_weight=3, gaussian_xy=3),  # DeepLab v1 (VGG16 LargeFOV)
    "pydensecrf-readme": CRFParams(iterations=5, bilateral_weight=10, bilateral_xy=80, bilateral_rgb=13,
                                   gaussian_weight=3, gaussian_xy=3),  # pydensecrf README example
}


def _import_densecrf():
    return import_densecrf(INSTALL_HINT)


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




def dense_crf(probabilities: np.ndarray, image_rgb: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """The reference dense CRF: every label, full resolution, `params.iterations` mean-field
    iterations, exactly as pydensecrf's DenseCRF2D recipe computes it; float32 [C, H, W]."""
    probabilities = np.asarray(probabilities)
    image_rgb = np.asarray(image_rgb)
    _check_inputs(probabilities, image_rgb)
    n_classes, height, width = probabilities.shape
    crf = grid_crf(_import_densecrf(), probabilities, image_rgb, params)
    return np.asarray(crf.inference(int(params.iterations)), dtype=np.float32).reshape(n_classes, height, width)


@dataclass(frozen=True)
class CRFSettings:
    """What `--crf` asks for: the settings the user named (the rest come from the checkpoint
    record's `crf_defaults`, else DeepLab v2's) and the method ("fast", or "full" = the reference)."""

    given: tuple[tuple[str, Any], ...] = ()  # CRFParams fields the user set, e.g. (("iterations", 10),)
    method: str = "fast"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CRFParameterError(f"unknown CRF method {self.method!r}: choose one of {', '.join(METHODS)}")
        unknown = sorted(set(dict(self.given)) - {item.name for item in fields(CRFParams)})
        if unknown:
            raise CRFParameterError(f"unknown CRF setting {', '.join(unknown)}")
        CRFParams(**dict(self.given))  # out-of-range values fail here

    @classmethod
    def from_params(cls, params: CRFParams, method: str = "fast") -> "CRFSettings":
        """Every setting as given (so the iteration count is honoured, not capped)."""
        return cls(given=tuple(asdict(params).items()), method=method)

    @property
    def iterations_given(self) -> bool:
        return "iterations" in dict(self.given)

    def params(self, record=None) -> CRFParams:  # record: a CheckpointRecord (not imported: it imports this module)
        """The kernel settings that run: the user's, else the record's defaults, else DeepLab v2's."""
        given = dict(self.given)
        return record.crf_params(**given) if record is not None else CRFParams(**given)


@dataclass(frozen=True)
class CRFRun:
    """The CRF that actually ran on one image (per-image JSON `crf`). Two iteration counts, on purpose:
    `iterations` (JSON `crf.iterations`) is what ran, after the fast method's cap; `params.iterations`
    (JSON `crf.params.iterations`) is what was asked for, as the kernel settings say it."""

    method: str                      # "fast", "full" or "torch"
    params: CRFParams                # kernel settings; params.iterations as asked, before any cap
    iterations: int                  # mean-field iterations run at `resolution` (after any cap)
    resolution: tuple[int, int]      # (width, height) those iterations ran at
    labels: tuple[int, ...]          # labels that took part (the others cannot win a pixel)
    num_labels: int
    band_iterations: int = 0         # "fast": full-resolution updates on the uncertain band
    band_fraction: float = 0.0       # "fast": share of the image's pixels in that band

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "iterations": self.iterations, "resolution": list(self.resolution),
                "labels_kept": list(self.labels), "labels_total": self.num_labels,
                "band_iterations": self.band_iterations, "band_fraction": round(self.band_fraction, 4),
                "params": asdict(self.params)}

    def describe(self) -> str:
        width, height = self.resolution
        text = f"{self.method} CRF: {self.iterations} iterations at {width}x{height}"
        if self.band_iterations:
            text += f", then {self.band_iterations} at full size on {self.band_fraction:.0%} of the pixels"
        return text + f", {len(self.labels)} of {self.num_labels} labels"


def method_for(method: str, device=None) -> str:
    """The method that runs: "fast" is the torch CRF on a CUDA device, and on the CPU without pydensecrf."""
    if method == "fast" and (str(device or "cpu").startswith("cuda") or not crf_available()):
        return "torch"
    return method


def refine(probabilities: np.ndarray, image_rgb: np.ndarray, params: CRFParams = CRFParams(), *,
           method: str = "fast", iterations_given: bool = False, device=None) -> tuple[np.ndarray, CRFRun]:
    """`--crf`'s policy: the reference ("full"), the fast method, or the torch CRF on `device` (the
    model's; "fast" on CUDA runs it: method_for), with the iteration cap only when the user did not
    give the iterations (pydensecrf's fast method only). Returns float32 [C, H, W] and what ran."""
    probabilities = np.asarray(probabilities)
    image_rgb = np.asarray(image_rgb)
    _check_inputs(probabilities, image_rgb)
    n_classes, height, width = probabilities.shape
    method = method_for(method, device) if method in METHODS else method
    if method == "torch":
        from segcli.crf_torch import dense_crf_torch

        refined = dense_crf_torch(probabilities, image_rgb, params, torch_device(device)).cpu().numpy()
        return refined, CRFRun("torch", params, params.iterations, (width, height), tuple(range(n_classes)), n_classes)
    if method == "full":
        run = CRFRun("full", params, params.iterations, (width, height), tuple(range(n_classes)), n_classes)
        return dense_crf(probabilities, image_rgb, params), run
    if method != "fast":
        raise CRFParameterError(f"unknown CRF method {method!r}: choose one of {', '.join(METHODS)}")
    iterations = run_iterations(params, method, iterations_given)
    keep = labels_that_can_win(probabilities, params)
    result = np.zeros(probabilities.shape, dtype=np.float32)
    if len(keep) == 1:  # one label wins everywhere whatever the pairwise terms do
        result[keep[0]] = 1.0
        return result, CRFRun("fast", params, 0, (width, height), tuple(keep), n_classes)
    subset = probabilities.astype(np.float32) if len(keep) == n_classes else normalised(probabilities[keep])
    refined, ran = _two_scale(subset, image_rgb, params, iterations)
    result[keep] = refined
    return result, CRFRun("fast", params, labels=tuple(int(k) for k in keep), num_labels=n_classes, **ran)


def torch_device(device):
    """The torch device the torch CRF runs on: `device` (the model's), else the CPU."""
    import torch

    return torch.device(device) if device is not None else torch.device("cpu")


def run_iterations(params: CRFParams, method: str, iterations_given: bool) -> int:
    """Mean-field iterations that run: as given, or (fast method, not given) capped at FAST_ITERATIONS."""
    if method in ("full", "torch") or iterations_given:
        return int(params.iterations)
    return min(int(params.iterations), FAST_ITERATIONS)


def describe_plan(params: CRFParams, settings: CRFSettings) -> dict[str, Any]:
    """What `--crf` will run for these settings, before seeing an image (evaluate/benchmark JSON, terminal)."""
    method = method_for(settings.method)  # "fast" without pydensecrf: the torch CRF
    iterations = run_iterations(params, method, settings.iterations_given)
    if method == "full":
        text = f"reference dense CRF: {iterations} iterations, every label, full size"
    elif method == "torch":
        text = f"dense CRF in torch on the model's device: {iterations} iterations, every label, full size"
    else:
        text = (f"fast dense CRF: {iterations} iterations at half size (at most {COARSE_MAX_SIDE} px a side; "
                f"full size below {TWO_SCALE_MIN_SIDE} px); pixels still uncertain then may get {BAND_ITERATIONS} "
                "more at full size; labels that cannot win dropped (each image's JSON `crf` says what ran; "
                "on a CUDA device: the torch CRF, every iteration)")
    return {"method": settings.method, "iterations": iterations, "iterations_given": settings.iterations_given,
            "params": asdict(params), "text": text}


def labels_that_can_win(probabilities: np.ndarray, params: CRFParams) -> np.ndarray:
    """Labels within exp(-(w1 + w2)) of some pixel's winner. The pairwise terms add at most about
    w1 + w2 to a label's log-odds (normalised kernels, probabilities <= 1), so a label further
    behind than that everywhere cannot take a pixel."""
    n_classes = probabilities.shape[0]
    flat = np.clip(probabilities.reshape(n_classes, -1), PROBABILITY_FLOOR, None)
    ratio_peak = (flat / flat.max(axis=0, keepdims=True)).max(axis=1)
    return np.flatnonzero(ratio_peak >= np.exp(-(params.bilateral_weight + params.gaussian_weight)))


def _two_scale(probabilities: np.ndarray, image_rgb: np.ndarray, params: CRFParams,
               iterations: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Mean field on a reduced grid, upsampled, then full-resolution updates on the uncertain band.
    Returns the refined [C, H, W] and what ran (CRFRun's fields)."""
    densecrf = _import_densecrf()
    n_classes, height, width = probabilities.shape
    if min(height, width) < TWO_SCALE_MIN_SIDE:
        crf = grid_crf(densecrf, probabilities, image_rgb, params)
        refined = np.asarray(crf.inference(int(iterations)), dtype=np.float32).reshape(n_classes, height, width)
        return refined, {"iterations": iterations, "resolution": (width, height)}
    if (log_margin(probabilities) < BAND_MARGIN).mean() > 2 * MAX_BAND_FRACTION:  # flat already: skip the coarse pass
        return _reference_iterations(densecrf, probabilities, image_rgb, params, 1.0)
    scale = min(0.5, COARSE_MAX_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = normalised(resize_planes(probabilities, size))
    coarse = grid_crf(densecrf, small, resize_image(image_rgb, size), params, scale).inference(int(iterations))
    start = normalised(resize_planes(np.asarray(coarse).reshape(n_classes, size[1], size[0]), (width, height)))
    band = (log_margin(start) < BAND_MARGIN) | (start.argmax(axis=0) != probabilities.argmax(axis=0))
    if band.mean() > MAX_BAND_FRACTION:  # a nearly flat map: mean field moves labels far, no shortcut holds
        return _reference_iterations(densecrf, probabilities, image_rgb, params, float(band.mean()))
    indices = np.flatnonzero(dilate(band, BAND_CONTEXT))
    if len(indices):
        crf = pixel_set_crf(densecrf, probabilities, image_rgb, params, indices)
        flat = start.reshape(n_classes, -1)
        updated = warm_steps(crf, flat[:, indices], BAND_ITERATIONS)
        in_band = band.ravel()[indices]
        flat[:, indices[in_band]] = updated[:, in_band]
    return start, {"iterations": iterations, "resolution": size, "band_fraction": float(band.mean()),
                   "band_iterations": BAND_ITERATIONS if len(indices) else 0}


def _reference_iterations(densecrf, probabilities: np.ndarray, image_rgb: np.ndarray, params: CRFParams,
                          band_fraction: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The fast method's way out on nearly flat maps: every given iteration at full size."""
    n_classes, height, width = probabilities.shape
    refined = np.asarray(grid_crf(densecrf, probabilities, image_rgb, params).inference(int(params.iterations)))
    ran = {"iterations": int(params.iterations), "resolution": (width, height), "band_fraction": band_fraction}
    return refined.astype(np.float32).reshape(n_classes, height, width), ran
