"""Evaluate an engine on a labelled VOC-format folder, with exactly the preprocessing `predict` uses."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from segcli.data.voc import declared_classes, load_mask, load_rgb, read_classes, read_split
from segcli.errors import DatasetError, SegcliError, SegcliWarning
from segcli.inference_options import FROM_OPTIONS, CRFChoice
from segcli.metrics import ConfusionMatrix
from segcli.text import printable

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine


def evaluate_folder(engine: "SegmentationEngine", data_dir: str | Path, split: str = "val",
                    crf: CRFChoice = FROM_OPTIONS,
                    on_image: Callable[[int, int], None] | None = None,
                    max_pixels: int | None = None) -> dict[str, Any]:
    """Confusion-matrix metrics of `engine` over one split; `on_image(done, total)` reports progress.

    `crf` as `engine.predict` takes it (left out: the engine's options); images are read as
    predict reads them (EXIF orientation; `max_pixels`, None: segcli's default limit).
    """
    resolved = engine.crf_for(crf)
    pairs = read_split(data_dir, split)
    categories = tuple(engine.record.categories)
    dataset_classes = read_classes(data_dir)
    if len(dataset_classes) != len(categories):
        raise DatasetError(f"{data_dir} has {len(dataset_classes)} classes but the checkpoint predicts "
                           f"{len(categories)} ({engine.record.name}); evaluate it on data with its classes")
    _warn_if_names_differ(data_dir, categories, engine.record.name)
    confusion = ConfusionMatrix(len(categories), categories)
    for done, (image_path, mask_path) in enumerate(pairs, start=1):
        image, target = _load_pair(image_path, mask_path, len(categories), max_pixels)
        if target.shape != image.shape[:2]:
            raise DatasetError(f"{image_path} and its mask {mask_path} differ in size")
        prediction = engine.predict(image, crf=None if resolved is None else resolved[1])
        confusion.update(prediction.labels, target)
        if on_image is not None:
            on_image(done, len(pairs))
    result = confusion.to_dict()
    result.update({
        "split": split, "images": len(pairs), "data": str(data_dir), "model": engine.record.model,
        "checkpoint": engine.record.name, "crf": None if resolved is None else _describe(resolved),
    })
    return result


def _warn_if_names_differ(data_dir: str | Path, categories: tuple[str, ...], checkpoint: str) -> None:
    """A SegcliWarning when the folder's own class list names its classes otherwise than the checkpoint."""
    declared = declared_classes(data_dir)
    if declared is None or tuple(declared) == tuple(categories):
        return
    differing = [(index, ours, theirs) for index, (ours, theirs) in enumerate(zip(declared, categories))
                 if ours != theirs]
    shown = ", ".join(f"{index}: {printable(ours)} vs {printable(theirs)}" for index, ours, theirs in differing[:3])
    more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
    warnings.warn(f"{printable(str(data_dir))} names its classes otherwise than {printable(checkpoint)} "
                  f"(data vs checkpoint: {shown}{more}): the scores compare labels by index", SegcliWarning,
                  stacklevel=3)


def _load_pair(image_path: Path, mask_path: Path, num_classes: int, max_pixels: int | None):
    """The image and its mask; a pair that cannot be read stops the evaluation (scores over the rest of the
    split would not be the split's) with one line naming both files."""
    try:
        return load_rgb(image_path, max_pixels), load_mask(mask_path, num_classes, max_pixels)
    except SegcliError as exc:
        raise DatasetError(f"cannot evaluate the pair {printable(image_path)} + {printable(mask_path)}: {exc}; "
                           "fix the pair or drop its id from the split file", hint=exc.hint) from None


def _describe(resolved) -> dict[str, Any]:
    from segcli.crf import describe_plan

    return describe_plan(*resolved)
