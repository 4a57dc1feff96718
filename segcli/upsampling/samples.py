"""Images to compare on, with their ground-truth masks when the folder has them.

Two layouts give masks: VOC (`JPEGImages/` + `SegmentationClass/<id>.png`, optionally one
split of `ImageSets/Segmentation/`), or a `masks/` folder beside the images holding
`<stem>.png` (looked up next to each image, then under DIR/masks/<sub-folders>/).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcli.errors import DatasetError

MASKS_FOLDER = "masks"


@dataclass(frozen=True)
class Sample:
    path: Path               # the image file
    relative: Path           # names the outputs (keeps sub-folders)
    mask_path: Path | None   # ground truth, None when the folder has none for this image


def find_samples(folder: str | Path, split: str | None = None, limit: int | None = None) -> list[Sample]:
    """The images of `folder` and their masks (see the module docstring)."""
    from segcli.imageio import find_images

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder: pass a folder of images (VOC layout or with a masks/ folder)")
    if root.name == "JPEGImages" and (root.parent / "SegmentationClass").is_dir():
        root = root.parent  # the images folder of a VOC layout was given
    voc_images = root / "JPEGImages"
    if voc_images.is_dir():
        sources = find_images([voc_images])
        if split is not None:
            wanted = _split_ids(root, split)
            sources = [source for source in sources if source.relative.with_suffix("").as_posix() in wanted]
            if not sources:
                raise DatasetError(f"no image of split {split!r} found in {voc_images}")
        samples = [Sample(s.path, s.relative, _existing(root / "SegmentationClass" / s.relative.with_suffix(".png")))
                   for s in sources]
    else:
        if split is not None:
            raise DatasetError(f"--split needs a VOC-layout folder (JPEGImages/, ImageSets/Segmentation/); "
                               f"{root} has no JPEGImages/")
        sources = [s for s in find_images([root]) if MASKS_FOLDER not in s.relative.parts[:-1]]
        if not sources:
            raise DatasetError(f"no images in {root} outside its {MASKS_FOLDER}/ folder")
        samples = [Sample(s.path, s.relative, _mask_beside(root, s.path, s.relative)) for s in sources]
    return samples[:limit] if limit else samples


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
