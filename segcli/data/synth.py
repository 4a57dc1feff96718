"""Procedural segmentation scenes: shapes told apart by outline and texture, not by colour.

Every object gets a random colour, so a model has to learn shape and texture. Scenes have
textured backgrounds, overlapping objects (later objects hide earlier ones), thin wires, small
dots, varied sizes and aspect ratios, pixel noise and JPEG artefacts. A scene depends only on
(seed, index, size), so the same call always gives the same bytes.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from segcli.errors import OutputError
from segcli.palettes import IGNORE_INDEX, flat_palette

SYNTH_CLASSES: tuple[str, ...] = (
    "background", "disc", "box", "triangle", "ring", "star", "striped", "wire", "dots",
)
DATASET_NAME = "segcli-synth"
_OBJECT_CLASSES = tuple(range(1, len(SYNTH_CLASSES)))


@dataclass(frozen=True)
class SynthScene:
    image: np.ndarray  # [H, W, 3] uint8, before JPEG encoding
    mask: np.ndarray   # [H, W] uint8 class indices (index into SYNTH_CLASSES); 255 = ignore band


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    classes: tuple[str, ...]


# ---------------------------------------------------------------- backgrounds and fills

def _sinusoid_field(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, waves: int,
                    max_freq: float) -> np.ndarray:
    """A smooth random field in [-1, 1]: a sum of a few random plane waves."""
    field = np.zeros_like(yy)
    for _ in range(waves):
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(0.2, 1.0) * max_freq
        field += np.cos(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
    return field / waves


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3).astype(np.float32)


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A textured background: a gradient plus one of smooth noise, stripes or a checker."""
    h, w = yy.shape
    base = _random_color(rng)
    other = _random_color(rng)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h + 1.0) / 2.0  # 0..1
    strength = rng.uniform(0.0, 0.6)
    image = base + (other - base) * (strength * ramp)[..., None]
    kind = rng.integers(0, 4)
    if kind == 0:    # smooth blotches
        field = _sinusoid_field(rng, yy, xx, waves=4, max_freq=0.15)
        image = image + rng.uniform(15, 50) * field[..., None] * rng.uniform(0.5, 1.0, size=3)
    elif kind == 1:  # faint stripes (weaker than the `striped` objects' stripes)
        field = _sinusoid_field(rng, yy, xx, waves=1, max_freq=0.6)
        image = image + rng.uniform(10, 35) * field[..., None]
    elif kind == 2:  # checker
        cell = rng.uniform(6, 20)
        checker = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2) * 2 - 1
        image = image + rng.uniform(8, 25) * checker[..., None]
    # kind 3: gradient only
    return image


def _object_fill(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, shade_scale: float) -> np.ndarray:
    """A random colour with mild shading, so colour never identifies the class."""
    color = _random_color(rng)
    shading = _sinusoid_field(rng, yy, xx, waves=2, max_freq=0.08) * rng.uniform(0, shade_scale)
    return color + shading[..., None]


def _stripe_fill(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Two colours in sharp stripes: the texture that makes a `striped` object."""
    a, b = _random_color(rng), _random_color(rng)
    while np.abs(a - b).sum() < 150:
        b = _random_color(rng)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 9)
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
    stripes = (np.floor(phase) % 2)[..., None]
    return a + (b - a) * stripes


# ---------------------------------------------------------------- shapes (boolean masks)

def _rotated(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def _shape_mask(rng: np.random.Generator, class_index: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    h, w = yy.shape
    side = min(h, w)
    cy, cx = rng.uniform(0.05, 0.95) * h, rng.uniform(0.05, 0.95) * w
    angle = rng.uniform(0, 2 * np.pi)
    radius = rng.uniform(0.07, 0.22) * side
    aspect = rng.uniform(0.6, 1.6)
    u, v = _rotated(yy, xx, cy, cx, angle)
    name = SYNTH_CLASSES[class_index]
    if name == "disc":
        aspect = rng.uniform(0.8, 1.25)
        return (u / (radius * aspect)) ** 2 + (v * aspect / radius) ** 2 <= 1.0
    if name == "box":
        return (np.abs(u) <= radius * aspect) & (np.abs(v) <= radius / aspect)
    if name == "triangle":
        corners = [2 * np.pi * k / 3 + rng.uniform(-0.35, 0.35) for k in range(3)]
        pts = [(radius * np.cos(t) * aspect, radius * np.sin(t) / aspect) for t in corners]
        inside = np.ones_like(u, dtype=bool)
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
            inside &= (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) >= 0  # left of each counter-clockwise edge
        return inside
    if name == "ring":
        r = np.hypot(u / aspect ** 0.5, v * aspect ** 0.5)
        thickness = rng.uniform(0.25, 0.45) * radius
        return (r <= radius) & (r >= radius - max(thickness, 2.0))
    if name == "star":
        points = int(rng.integers(4, 8))
        theta = np.arctan2(v, u)
        tooth = np.abs(((theta * points / (2 * np.pi)) % 1.0) - 0.5) * 2.0  # 1 at tips, 0 between
        inner = radius * rng.uniform(0.35, 0.55)
        return np.hypot(u, v) <= inner + (radius * 1.2 - inner) * tooth
    if name == "striped":
        theta = np.arctan2(v, u)
        wobble = 1.0 + 0.18 * np.sin(3 * theta + rng.uniform(0, 6.3)) + 0.1 * np.sin(5 * theta + rng.uniform(0, 6.3))
        return np.hypot(u / aspect, v * aspect) <= radius * 1.1 * wobble
    if name == "wire":
        length = rng.uniform(0.4, 0.9) * side
        width = rng.uniform(2.0, 3.5)
        amplitude = rng.uniform(0, 0.12) * side
        wavenumber = rng.uniform(0.5, 2.5) * 2 * np.pi / length
        centre_line = amplitude * np.sin(wavenumber * u + rng.uniform(0, 6.3))
        return (np.abs(v - centre_line) <= width / 2) & (np.abs(u) <= length / 2)
    if name == "dots":
        count = int(rng.integers(4, 10))
        spread = radius * 1.3
        mask = np.zeros_like(u, dtype=bool)
        for _ in range(count):
            dy, dx = rng.uniform(-spread, spread, size=2)
            r = rng.uniform(2.0, 3.5)
            mask |= (yy - (cy + dy)) ** 2 + (xx - (cx + dx)) ** 2 <= r * r
        return mask
    raise ValueError(f"no shape for class {class_index}")


# ---------------------------------------------------------------- scenes and folders

def _scene_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def make_scene(seed: int, index: int, size: tuple[int, int] = (128, 128)) -> SynthScene:
    """One scene (image before JPEG, mask); scene `index` always shows class 1 + index % 8."""
    rng = _scene_rng(seed, index)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(rng, yy, xx)
    mask = np.zeros((h, w), dtype=np.uint8)
    count = int(rng.integers(2, 7))
    classes = [_OBJECT_CLASSES[index % len(_OBJECT_CLASSES)]]
    classes += list(rng.choice(_OBJECT_CLASSES, size=count - 1))
    rng.shuffle(classes)  # random z-order: later objects occlude earlier ones
    for class_index in classes:
        shape = _shape_mask(rng, int(class_index), yy, xx)
        if SYNTH_CLASSES[class_index] == "striped":
            fill = _stripe_fill(rng, yy, xx)
        else:
            fill = _object_fill(rng, yy, xx, shade_scale=25.0)
        image[shape] = fill[shape]
        mask[shape] = class_index
    image = image + rng.normal(0, rng.uniform(2, 8), size=image.shape)
    return SynthScene(image=np.clip(image, 0, 255).astype(np.uint8), mask=ignore_band(mask))


def ignore_band(mask: np.ndarray) -> np.ndarray:
    """VOC-style: background pixels touching an object (8-neighbourhood) become 255 (ignore).

    Object pixels are never ignored, so thin wires and small dots keep every labelled pixel;
    only the one-pixel ring of background around objects, blurred by JPEG, is left out.
    """
    objects = np.pad(mask > 0, 1)
    near = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            near |= objects[dy:dy + h, dx:dx + w]
    return np.where((mask == 0) & near, np.uint8(IGNORE_INDEX), mask)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A palettized PNG whose pixel values are the class indices (the synth palette, as the shipped
    synth checkpoints draw their predictions)."""
    png = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))  # mode "L"
    png.putpalette(flat_palette("synth", len(SYNTH_CLASSES)))  # turns it into mode "P"
    buffer = io.BytesIO()
    png.save(buffer, format="PNG")
    return buffer.getvalue()


def scene_id(seed: int, index: int) -> str:
    return f"synth_{seed}_{index:05d}"


def _write_scenes(out: Path, seed: int, indices: range, size: tuple[int, int]) -> None:
    for index in indices:
        scene = make_scene(seed, index, size)
        quality = int(_scene_rng(seed, index).integers(70, 96))
        (out / "JPEGImages" / f"{scene_id(seed, index)}.jpg").write_bytes(encode_jpeg(scene.image, quality))
        (out / "SegmentationClass" / f"{scene_id(seed, index)}.png").write_bytes(encode_mask_png(scene.mask))


def _write_scenes_in_parallel(out: Path, seed: int, n: int, size: tuple[int, int], workers: int) -> None:
    """Scenes depend only on (seed, index, size): worker processes write disjoint index ranges."""
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, -(-n // (workers * 4)))  # a few chunks per worker, so they finish together
    ranges = [range(start, min(n, start + chunk)) for start in range(0, n, chunk)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(_write_scenes, [out] * len(ranges), [seed] * len(ranges), ranges, [size] * len(ranges)):
            pass


def write_synth_dataset(out_dir: str | Path, n: int, seed: int, size: tuple[int, int] = (128, 128),
                        val_fraction: float = 0.2, overwrite: bool = False, workers: int = 1) -> SynthSummary:
    """Write `n` scenes as a VOC-format folder; the last round(n * val_fraction) are the val split.

    `workers` processes write the scenes (same bytes as one); `dataset.json` is written last. A run
    that fails (a folder it cannot write, a full disk) raises OutputError and removes the folders it
    created, when they hold nothing else: no empty skeleton is left to block the rerun.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError("val_fraction must be in [0, 1]")
    out = Path(out_dir)
    if _holds_dataset(out) and not overwrite:
        raise OutputError(f"{out} already holds a dataset (overwrite=False)",
                          hint="pass --overwrite or choose another --out")
    created: list[Path] = []
    try:
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            _make_folders(out / sub, created)
        return _write_dataset(out, n, seed, size, val_fraction, workers)
    except OSError as exc:
        _remove_created(created, out)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}"
                          + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else "")) from None
    except BaseException:
        _remove_created(created, out)
        raise


def _holds_dataset(out: Path) -> bool:
    """A dataset is there when its description or a split list is (not merely empty folders)."""
    splits = out / "ImageSets" / "Segmentation"
    return (out / "dataset.json").exists() or (splits.is_dir() and any(splits.glob("*.txt")))


def _make_folders(folder: Path, created: list[Path]) -> None:
    """mkdir -p that notes each folder it made, outermost first."""
    missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _remove_created(created: list[Path], out: Path) -> None:
    """After a failed run: this run's scenes and then the folders it made, innermost first.

    Only files named like this run's scenes go, and only from folders this run made; a folder that
    holds anything else stays.
    """
    for folder in reversed(created):
        if folder.name in ("JPEGImages", "SegmentationClass") and folder.parent == out:
            for path in folder.glob("synth_*.*"):
                path.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty (or gone): what is in it stays


def _write_dataset(out: Path, n: int, seed: int, size: tuple[int, int], val_fraction: float,
                   workers: int) -> SynthSummary:
    ids = [scene_id(seed, index) for index in range(n)]
    n_val = int(round(n * val_fraction))
    if workers > 1 and n > 1:
        _write_scenes_in_parallel(out, seed, n, size, workers)
    else:
        _write_scenes(out, seed, range(n), size)
    train_ids, val_ids = ids[: n - n_val], ids[n - n_val:]
    splits = out / "ImageSets" / "Segmentation"
    (splits / "train.txt").write_text("".join(f"{i}\n" for i in train_ids))
    (splits / "val.txt").write_text("".join(f"{i}\n" for i in val_ids))
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in SYNTH_CLASSES))
    description = {
        "name": DATASET_NAME, "classes": list(SYNTH_CLASSES), "palette": "synth", "ignore_index": 255,
        "ignore_band": "1-pixel ring of background around objects",
        "seed": seed, "n": n, "size": [size[0], size[1]], "val_fraction": val_fraction,
        "splits": {"train": len(train_ids), "val": len(val_ids)},
    }
    (out / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    return SynthSummary(out, tuple(train_ids), tuple(val_ids), SYNTH_CLASSES)
