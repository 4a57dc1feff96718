"""VOC-format folders: `JPEGImages/`, `SegmentationClass/` (palettized PNG), `ImageSets/Segmentation/`.

`read_split` lists (image, mask) pairs; `SegmentationDataset` serves augmented training crops.
Augmentation randomness comes from a per-sample seed the sampler hands over, so a resumed
training run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from segcli.errors import DatasetError
from segcli.palettes import IGNORE_INDEX, VOC_CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_split(data_dir: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image path, mask path) for every id in `ImageSets/Segmentation/<split>.txt`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / "Segmentation").glob("*.txt"))
        found = f"; splits found: {', '.join(available)}" if available else ""
        raise DatasetError(f"{root} has no split file ImageSets/Segmentation/{split}.txt: it should list one image "
                           f"id per line, each with an image JPEGImages/ID.jpg (or .png) and a mask "
                           f"SegmentationClass/ID.png{found}", hint="choose one with --split" if available else None)
    ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"split file {split_file} lists no image ids")
    pairs: list[tuple[Path, Path]] = []
    for image_id in ids:
        image = next((root / "JPEGImages" / f"{image_id}{s}" for s in IMAGE_SUFFIXES
                      if (root / "JPEGImages" / f"{image_id}{s}").is_file()), None)
        mask = root / "SegmentationClass" / f"{image_id}.png"
        if image is None:
            raise DatasetError(f"image for id {image_id!r} missing: expected {root}/JPEGImages/{image_id}.jpg")
        if not mask.is_file():
            raise DatasetError(f"mask for id {image_id!r} missing: expected {mask}")
        pairs.append((image, mask))
    return pairs


def read_classes(data_dir: str | Path) -> tuple[str, ...]:
    """Class names from `dataset.json` or `classes.txt`; a folder with neither is taken as VOC's 21."""
    root = Path(data_dir)
    description = root / "dataset.json"
    if description.is_file():
        try:
            classes = json.loads(description.read_text())["classes"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{description} is not a dataset description with a 'classes' list ({exc})") from None
        return tuple(str(c) for c in classes)
    names = root / "classes.txt"
    if names.is_file():
        return tuple(line.strip() for line in names.read_text().splitlines() if line.strip())
    return VOC_CLASSES


def declared_classes(data_dir: str | Path) -> tuple[str, ...] | None:
    """The class list the folder itself carries (`dataset.json` or `classes.txt`), None when it has none."""
    root = Path(data_dir)
    if not (root / "dataset.json").is_file() and not (root / "classes.txt").is_file():
        return None
    return read_classes(root)


def read_dataset_name(data_dir: str | Path) -> str:
    description = Path(data_dir) / "dataset.json"
    if description.is_file():
        return str(json.loads(description.read_text()).get("name", "unknown"))
    return "VOC-format"


def load_rgb(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """An image as `predict` reads it (segcli.imageio.load_image: EXIF orientation, pixel limit;
    None: segcli's default limit)."""
    from segcli.imageio import DEFAULT_MAX_PIXELS, load_image

    return load_image(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS).rgb


def load_mask(path: Path, num_classes: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Class indices of a palettized (mode P) or grey (mode L) PNG; 255 = ignore (segcli.imageio.load_label_png:
    PNG only, pixel limit, None: segcli's default; any decoding failure is one DatasetError line)."""
    from segcli.errors import InputImageError
    from segcli.imageio import DEFAULT_MAX_PIXELS, load_label_png

    try:
        mask = load_label_png(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    except InputImageError as exc:
        raise DatasetError(f"mask {exc}", hint=exc.hint) from None
    if num_classes is not None:
        bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
        if bad.any():
            raise DatasetError(f"mask {path} holds label {int(mask[bad].max())} but the dataset has "
                               f"{num_classes} classes (labels 0..{num_classes - 1}, 255 = ignore)")
    return mask


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, crop: tuple[int, int],
            scale_range: tuple[float, float] = (0.5, 2.0), flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Random scale (bilinear image, nearest mask), pad (mask with 255) and crop, horizontal flip."""
    h, w = mask.shape
    scale = rng.uniform(*scale_range)
    new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (new_h, new_w) != (h, w):
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
        mask = np.asarray(Image.fromarray(mask).resize((new_w, new_h), Image.NEAREST))
    crop_h, crop_w = crop
    pad_h, pad_w = max(0, crop_h - new_h), max(0, crop_w - new_w)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
    top = int(rng.integers(0, image.shape[0] - crop_h + 1))
    left = int(rng.integers(0, image.shape[1] - crop_w + 1))
    image = image[top:top + crop_h, left:left + crop_w]
    mask = mask[top:top + crop_h, left:left + crop_w]
    if flip and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class SegmentationDataset:
    """A torch-style dataset over (image, mask) pairs, held in memory (synthetic sets are small).

    Items are requested as `(index, seed)`: the seed drives this sample's augmentation.
    `augment=False` returns whole images unchanged (for evaluation). `preprocess(image, preprocessing)`
    turns an HxWx3 uint8 image into the model's [1, 3, h, w] input: the caller passes the engine's own
    (`segcli.engine.preprocess`), so training sees what `predict` feeds the model.
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], num_classes: int, preprocessing, preprocess: Callable,
                 crop: tuple[int, int] | None = None, scale_range: tuple[float, float] = (0.5, 2.0),
                 flip: bool = True, augment: bool = True, max_pixels: int | None = None) -> None:
        self.images = [load_rgb(image, max_pixels) for image, _ in pairs]
        self.masks = [load_mask(mask, num_classes, max_pixels) for _, mask in pairs]
        for (image_path, _), image, mask in zip(pairs, self.images, self.masks):
            if image.shape[:2] != mask.shape:
                raise DatasetError(f"{image_path} is {image.shape[1]}x{image.shape[0]} but its mask is "
                                   f"{mask.shape[1]}x{mask.shape[0]}")
        self.preprocessing = preprocessing
        self.preprocess = preprocess
        self.crop = crop
        self.scale_range = scale_range
        self.flip = flip
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]):
        import torch

        index, seed = item
        image, mask = self.images[index], self.masks[index]
        if self.augment:
            crop = self.crop or mask.shape
            image, mask = augment(image, mask, np.random.default_rng(seed), crop, self.scale_range, self.flip)
        return self.preprocess(image, self.preprocessing)[0], torch.from_numpy(mask.astype(np.int64))
