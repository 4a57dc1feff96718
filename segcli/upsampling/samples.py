"""Images to compare on, with their ground-truth masks when the folder has them.

Two layouts give masks: VOC (`JPEGImages/` + `SegmentationClass/<id>.png`, optionally one
split of `ImageSets/Segmentation/`), the folder given or any folder under it (`samples/` holds
`samples/synth/`), or a `masks/` folder beside the images holding `<stem>.png` (looked up next
to each image, then under DIR/masks/<sub-folders>/). Label masks are never taken for photos.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcli.errors import DatasetError
from segcli.text import printable

MASKS_FOLDER = "masks"
LABEL_FOLDERS = frozenset({"SegmentationClass", "SegmentationObject", "SegmentationClassAug"})  # VOC's label PNGs


@dataclass(frozen=True)
class Sample:
    path: Path               # the image file
    relative: Path           # names the outputs (keeps sub-folders)
    mask_path: Path | None   # ground truth, None when the folder has none for this image


def find_samples(folder: str | Path, split: str | None = None, limit: int | None = None) -> list[Sample]:
    """The images of `folder` and their masks (see the module docstring)."""
    from segcli.inputs import find_images

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder: pass a folder of images (VOC layout or with a masks/ folder)")
    if root.name == "JPEGImages" and (root.parent / "SegmentationClass").is_dir():
        root = root.parent  # the images folder of a VOC layout was given
    if root.name in LABEL_FOLDERS:
        raise DatasetError(f"{printable(root)} holds label masks, not photos: pass the folder above it "
                           "(the VOC layout)")
    layouts = [root] if (root / "JPEGImages").is_dir() else _voc_layouts_under(root)
    if split is not None and not layouts:
        raise DatasetError(f"a split needs a VOC-layout folder (JPEGImages/, ImageSets/Segmentation/); "
                           f"{root} has no JPEGImages/")
    wanted = {layout: _split_ids(layout, split) for layout in layouts} if split is not None else None
    samples = []
    for source in find_images([root]):
        layout = next((layout for layout in layouts if source.path.is_relative_to(layout)), None)
        sample = _plain_sample(root, source) if layout is None else _voc_sample(root, layout, source.path)
        if sample is not None and (wanted is None or (layout is not None and _in_split(layout, sample, wanted))):
            samples.append(sample)
    if not samples:
        where = f"of split {split!r} " if split is not None else ""
        raise DatasetError(f"no images {where}in {printable(root)} "
                           f"(label masks and its {MASKS_FOLDER}/ folders left out)")
    return samples[:limit] if limit else samples


def _voc_layouts_under(root: Path) -> list[Path]:
    """Folders under `root` holding JPEGImages/ and SegmentationClass/ (not walked further), sorted."""
    layouts = []
    for current, folders, _ in os.walk(root):
        if "JPEGImages" in folders and "SegmentationClass" in folders:
            layouts.append(Path(current))
            folders.clear()
        else:
            folders[:] = [name for name in folders if not name.startswith(".")]
    return sorted(layouts)


def _voc_sample(root: Path, layout: Path, path: Path) -> Sample | None:
    """A layout's image with its SegmentationClass mask; None for its other files (label masks among them)."""
    images = layout / "JPEGImages"
    if not path.is_relative_to(images):
        return None
    inside = path.relative_to(images)
    return Sample(path, layout.relative_to(root) / inside,
                  _existing(layout / "SegmentationClass" / inside.with_suffix(".png")))


def _plain_sample(root: Path, source) -> Sample | None:
    folders = source.relative.parts[:-1]
    if MASKS_FOLDER in folders or LABEL_FOLDERS & set(folders):
        return None
    return Sample(source.path, source.relative, _mask_beside(root, source.path, source.relative))


def _in_split(layout: Path, sample: Sample, wanted: dict[Path, set[str]]) -> bool:
    return sample.path.relative_to(layout / "JPEGImages").with_suffix("").as_posix() in wanted[layout]


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _mask_beside(root: Path, path: Path, relative: Path) -> Path | None:
    return (_existing(path.parent / MASKS_FOLDER / f"{path.stem}.png")
            or _existing(root / MASKS_FOLDER / relative.with_suffix(".png")))


def _split_ids(root: Path, split: str) -> set[str]:
    split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"{root} has no split file ImageSets/Segmentation/{split}.txt")
    return {line.strip() for line in split_file.read_text().splitlines() if line.strip()}


def load_ground_truth(sample: Sample, shape: tuple[int, int], num_classes: int) -> np.ndarray | None:
    """The sample's mask as class indices (255 = ignore), checked against the image size."""
    if sample.mask_path is None:
        return None
    from segcli.data.voc import load_mask

    mask = load_mask(sample.mask_path, num_classes)
    if mask.shape != tuple(shape):
        raise DatasetError(f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                           f"{shape[1]}x{shape[0]}")
    return mask
