"""Label images: checked class indices, palette colours, pixel fractions, palettized PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segcli.atomic import atomic_write
from segcli.errors import OutputError
from segcli.palettes import IGNORE_INDEX, flat_palette, palette_colors


def check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """`labels` as an H x W integer array whose values are class indices (or IGNORE_INDEX)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an H x W integer array, got {labels.dtype} {labels.shape}")
    if labels.size:
        bad = (labels < 0) | ((labels >= n_classes) & (labels != IGNORE_INDEX))
        if bad.any():
            raise ValueError(
                f"label {int(labels[bad].flat[0])} is outside 0..{n_classes - 1} (and is not {IGNORE_INDEX})"
            )
    return labels


def label_indices(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The labels as C-contiguous uint8 pixel values of a palettized PNG."""
    labels = check_labels(labels, n_classes)
    if n_classes > IGNORE_INDEX:
        raise ValueError(f"a palettized PNG holds at most {IGNORE_INDEX} classes, got {n_classes}")
    return np.ascontiguousarray(labels, dtype=np.uint8)


def label_png(labels: np.ndarray, palette: Any, n_classes: int) -> Image.Image:
    """A mode "P" image whose pixel values are the class indices (VOC style) with the palette."""
    indices = label_indices(labels, n_classes)
    height, width = indices.shape
    image = Image.frombytes("P", (width, height), indices.tobytes())
    image.putpalette(flat_palette(palette, n_classes))
    return image


def colorize(labels: np.ndarray, palette: Any, n_classes: int) -> np.ndarray:
    """H x W x 3 uint8 colours of the labels."""
    labels = check_labels(labels, max(n_classes, 1))
    lookup = np.array(palette_colors(palette, n_classes), dtype=np.uint8)
    return lookup[labels]


def class_fractions(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Fraction of all pixels (ignore pixels included in the total) that each class covers."""
    labels = check_labels(labels, n_classes)
    if labels.size == 0:
        return np.zeros(n_classes, dtype=np.float64)
    counts = np.bincount(labels[labels != IGNORE_INDEX].ravel(), minlength=n_classes)
    return counts[:n_classes] / labels.size


def percent_text(fraction: float) -> str:
    """'12.3%'; a class present but under 0.05% is '<0.1%', never '0.0%'."""
    if 0.0 < fraction < 0.0005:
        return "<0.1%"
    return f"{fraction * 100:.1f}%"


def atomic_save_image(image: Image.Image, path: str | Path, **save_kwargs: Any) -> None:
    """Save a PIL image atomically; the format comes from the file extension."""
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise OutputError(f"cannot write {path}: unknown image extension {path.suffix!r}")
    atomic_write(path, lambda handle: image.save(handle, format=image_format, **save_kwargs))


def atomic_save_npz(path: str | Path, compress: bool = True, **arrays: np.ndarray) -> None:
    """Save arrays to an .npz atomically (compressed by default)."""
    save = np.savez_compressed if compress else np.savez
    atomic_write(path, lambda handle: save(handle, **arrays))
