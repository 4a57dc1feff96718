"""Outputs about single classes: one 1-bit mask per class, a transparent cut-out, COCO RLE annotations.

Which classes: the run's `--classes` (`RunInfo.classes`) when given; else every class for masks
and RLE (together they rebuild the label map), and every class but the background for cut-outs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Sequence

import numpy as np

from segcli.atomic import json_bytes
from segcli.errors import MissingDependencyError
from segcli.outputs.images import check_labels
from segcli.outputs.png import encode_mask_png, encode_png

if TYPE_CHECKING:
    from segcli.outputs.results import ImageResult, RunInfo

BACKGROUND_NAMES = frozenset({"background", "bg"})  # compared with "_" stripped, case-insensitive
COCO_HINT = "COCO RLE needs pycocotools: pip install 'segcli[coco]' (or pip install pycocotools)"
_UNSAFE_IN_NAMES = frozenset('/\\:*?"<>|')


def class_file_labels(categories: Sequence[str]) -> tuple[str, ...]:
    """The CLASS part of `NAME_mask_CLASS.png` per class: its name, made safe for a file name, unique.

    Path separators, characters Windows refuses and control characters become "_"; a name that
    is empty, starts with "." or is shared by two classes after that gets its index in front.
    """
    safe = ["".join("_" if char in _UNSAFE_IN_NAMES or not char.isprintable() else char for char in name)
            for name in categories]
    counts = {name: safe.count(name) for name in safe}
    return tuple(name if name and not name.startswith(".") and counts[name] == 1 else f"{index}_{name}"
                 for index, name in enumerate(safe))


def match_classes(items: Sequence[str], categories: Sequence[str]) -> tuple[tuple[int, ...], list[str]]:
    """Class indices of `--classes` items (exact names, then names in any case when one class has it, then
    indices), sorted, and the items that name no class (predict and serve say so their own way)."""
    folded: dict[str, list[int]] = {}
    for index, name in enumerate(categories):
        folded.setdefault(name.casefold(), []).append(index)
    indices, unknown = set(), []
    for item in items:
        if item in categories:
            indices.add(list(categories).index(item))
        elif len(folded.get(item.casefold(), [])) == 1:
            indices.add(folded[item.casefold()][0])
        elif item.isdigit() and int(item) < len(categories):
            indices.add(int(item))
        else:
            unknown.append(item)
    return tuple(sorted(indices)), unknown


def is_background(name: str) -> bool:
    return name.strip("_ ").lower() in BACKGROUND_NAMES


def present_classes(labels: np.ndarray, n_classes: int) -> list[int]:
    """Indices of the classes with at least one pixel (the ignore label is no class)."""
    labels = check_labels(labels, n_classes)
    counts = np.bincount(labels.ravel(), minlength=n_classes)[:n_classes]
    return [int(index) for index in np.flatnonzero(counts)]


def kept_classes(run: "RunInfo", cutout: bool = False) -> list[int]:
    """The classes masks and RLE (or, `cutout=True`, cut-outs) are written for."""
    if run.classes is not None:
        return list(run.classes)
    return [index for index, name in enumerate(run.categories) if not (cutout and is_background(name))]


def write_class_mask(result: "ImageResult", run: "RunInfo", handle: BinaryIO, class_index: int) -> None:
    handle.write(encode_mask_png(np.asarray(result.labels) == class_index, provenance="mask"))


def cutout_pixels(rgb: np.ndarray, labels: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """H x W x 4: the image, opaque where a kept class is and fully transparent (RGB zero) elsewhere."""
    inside = np.isin(labels, np.asarray(list(keep), dtype=np.int64))
    rgba = np.zeros((*labels.shape, 4), dtype=np.uint8)
    rgba[inside, :3] = rgb[inside]
    rgba[inside, 3] = 255
    return rgba


def write_cutout(result: "ImageResult", run: "RunInfo", handle: BinaryIO) -> None:
    labels = check_labels(result.labels, len(run.categories))
    handle.write(encode_png(cutout_pixels(result.rgb, labels, kept_classes(run, cutout=True)), provenance="cutout"))


def require_pycocotools() -> None:
    """MissingDependencyError (one line with the pip hint) when pycocotools cannot be imported."""
    try:
        import pycocotools.mask  # noqa: F401
    except ImportError:
        raise MissingDependencyError(COCO_HINT) from None


def rle_document(result: "ImageResult", run: "RunInfo") -> dict[str, Any]:
    """A COCO dataset of one image: one annotation per kept class present, `category_id` = class index."""
    require_pycocotools()
    from pycocotools import mask as coco_mask

    from segcli import __version__

    labels = check_labels(result.labels, len(run.categories))
    height, width = labels.shape
    keep = set(kept_classes(run))
    annotations = []
    for class_index in (index for index in present_classes(labels, len(run.categories)) if index in keep):
        mask = np.asfortranarray(labels == class_index, dtype=np.uint8)
        rle = coco_mask.encode(mask)
        annotations.append({
            "id": len(annotations) + 1, "image_id": 1, "category_id": class_index,
            "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            "area": int(coco_mask.area(rle)), "bbox": [float(value) for value in coco_mask.toBbox(rle)],
            "iscrowd": 1,  # RLE segmentations are "crowd" annotations in COCO's format
        })
    return {
        "info": {"description": f"segmentation of {Path(result.path).name}", "contributor": "segcli",
                 "version": __version__, "model": run.model, "checkpoint": run.checkpoint},
        "images": [{"id": 1, "file_name": Path(result.path).name, "width": width, "height": height}],
        "categories": [{"id": index, "name": name} for index, name in enumerate(run.categories)],
        "annotations": annotations,
    }


def write_rle(result: "ImageResult", run: "RunInfo", handle: BinaryIO) -> None:
    handle.write(json_bytes(rle_document(result, run)))


def is_our_rle(path: Path) -> bool:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return (isinstance(document, dict) and isinstance(document.get("info"), dict)
            and document["info"].get("contributor") == "segcli" and "annotations" in document)
