"""Write predictions: label PNGs (VOC style), overlays with a legend, JSON summaries, probabilities.

Every file is written atomically (temporary file in the same folder, fsync, os.replace), so an
interrupted run never leaves a half-written output under its final name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segcli.atomic import atomic_write, atomic_write_bytes, atomic_write_json  # noqa: F401 (re-exported)
from segcli.errors import OutputError
from segcli.palettes import IGNORE_INDEX, flat_palette, palette_colors

IGNORE_NAME = "ignore"


# --- atomic writes (segcli.atomic; re-exported here for the writers below) ------------------

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


# --- label images ----------------------------------------------------------------------------

def _check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
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


def label_png(labels: np.ndarray, palette: Any, n_classes: int) -> Image.Image:
    """A mode "P" image whose pixel values are the class indices (VOC style) with the palette."""
    labels = _check_labels(labels, n_classes)
    if n_classes > IGNORE_INDEX:
        raise ValueError(f"a palettized PNG holds at most {IGNORE_INDEX} classes, got {n_classes}")
    height, width = labels.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    image.putpalette(flat_palette(palette, n_classes))
    return image


def colorize(labels: np.ndarray, palette: Any, n_classes: int) -> np.ndarray:
    """H x W x 3 uint8 colours of the labels."""
    labels = _check_labels(labels, max(n_classes, 1))
    lookup = np.array(palette_colors(palette, n_classes), dtype=np.uint8)
    return lookup[labels]


def class_fractions(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Fraction of all pixels (ignore pixels included in the total) that each class covers."""
    labels = _check_labels(labels, n_classes)
    if labels.size == 0:
        return np.zeros(n_classes, dtype=np.float64)
    counts = np.bincount(labels[labels != IGNORE_INDEX].ravel(), minlength=n_classes)
    return counts[:n_classes] / labels.size


# --- overlay with legend ---------------------------------------------------------------------

def _legend_font(image_width: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font, scaled with the image where FreeType is available (11..40 px)."""
    size = int(min(40, max(11, image_width / 60)))
    return ImageFont.load_default(size=size)


def _legend_entries(labels: np.ndarray, categories: Sequence[str]) -> list[tuple[int, str, float]]:
    """(class index, name, pixel fraction) of the classes present, most pixels first."""
    n_classes = len(categories)
    fractions = class_fractions(labels, n_classes)
    entries = [(int(i), categories[i], float(fractions[i])) for i in np.flatnonzero(fractions)]
    ignored = float(np.count_nonzero(labels == IGNORE_INDEX)) / max(labels.size, 1)
    if ignored > 0:
        entries.append((IGNORE_INDEX, IGNORE_NAME, ignored))
    return sorted(entries, key=lambda entry: (-entry[2], entry[0]))


def overlay(
    image_rgb: np.ndarray,
    labels: np.ndarray,
    categories: Sequence[str],
    palette: Any,
    alpha: float = 0.5,
) -> Image.Image:
    """Blend the label colours over the image and add a legend strip below it.

    The picture keeps its pixels at the top-left; the legend (swatch, name, pixel %) of the
    classes present sits in a white strip underneath, never over the image. For tiny images
    the canvas is widened so the legend stays readable.
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {image_rgb.dtype} {image_rgb.shape}")
    if labels.shape != image_rgb.shape[:2]:
        raise ValueError(f"labels {labels.shape} and image {image_rgb.shape[:2]} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}")
    colors = colorize(labels, palette, len(categories)).astype(np.float32)
    blended = image_rgb.astype(np.float32) * (1.0 - alpha) + colors * alpha
    picture = Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), "RGB")
    return _with_legend(picture, _legend_entries(labels, categories), palette_colors(palette, len(categories)))


def _with_legend(picture: Image.Image, entries: list[tuple[int, str, float]], colors: list) -> Image.Image:
    font = _legend_font(picture.width)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = measure.textbbox((0, 0), "Ag%", font=font)[3] + 2
    swatch = line_height
    pad = max(4, line_height // 3)
    texts = [f"{name} {fraction * 100:.1f}%" for _, name, fraction in entries] or ["no classes"]
    widths = [swatch + pad + int(measure.textlength(text, font=font)) for text in texts]

    canvas_width = max(picture.width, max(widths) + 2 * pad)
    rows: list[list[int]] = [[]]  # entry indices per row, wrapped at the canvas width
    x = pad
    for index, width in enumerate(widths):
        if rows[-1] and x + width + pad > canvas_width:
            rows.append([])
            x = pad
        rows[-1].append(index)
        x += width + 2 * pad
    strip_height = len(rows) * (line_height + pad) + pad

    canvas = Image.new("RGB", (canvas_width, picture.height + strip_height), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = picture.height + pad
    for row in rows:
        x = pad
        for index in row:
            if entries:
                color = tuple(colors[entries[index][0]])
                draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=color, outline=(0, 0, 0))
            draw.text((x + swatch + pad, y), texts[index], fill=(0, 0, 0), font=font)
            x += widths[index] + 2 * pad
        y += line_height + pad
    return canvas


# --- one prediction's files ------------------------------------------------------------------

@dataclass(frozen=True)
class OutputPlan:
    """The files one image's prediction writes, under `out_dir / relative.parent`."""

    labels: Path         # <stem>.png, palettized class indices
    overlay: Path        # <stem>_overlay.png
    summary: Path        # <stem>.json
    probabilities: Path  # <stem>_probs.npz

    @classmethod
    def for_image(cls, out_dir: str | Path, relative: str | Path) -> "OutputPlan":
        relative = Path(relative)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"output name must be a relative path inside the output folder, got {relative}")
        folder = Path(out_dir) / relative.parent
        stem = relative.stem
        return cls(
            labels=folder / f"{stem}.png",
            overlay=folder / f"{stem}_overlay.png",
            summary=folder / f"{stem}.json",
            probabilities=folder / f"{stem}_probs.npz",
        )

    def selected(self, write_overlay: bool = True, write_probabilities: bool = False) -> list[Path]:
        """The paths a run with these options writes."""
        paths = [self.labels]
        if write_overlay:
            paths.append(self.overlay)
        if write_probabilities:
            paths.append(self.probabilities)
        paths.append(self.summary)
        return paths


def output_paths(out_dir: str | Path, relative: str | Path) -> dict[str, Path]:
    """{"labels", "overlay", "summary", "probabilities"} -> path, keeping sub-folders of `relative`."""
    plan = OutputPlan.for_image(out_dir, relative)
    return {"labels": plan.labels, "overlay": plan.overlay, "summary": plan.summary, "probabilities": plan.probabilities}


def existing_outputs(
    out_dir: str | Path, relative: str | Path, write_overlay: bool = True, write_probabilities: bool = False
) -> list[Path]:
    """Outputs of this image that already exist (for --skip-existing, before running the model)."""
    plan = OutputPlan.for_image(out_dir, relative)
    return [path for path in plan.selected(write_overlay, write_probabilities) if path.exists()]


def write_prediction(
    out_dir: str | Path,
    relative: str | Path,
    image_rgb: np.ndarray,
    labels: np.ndarray,
    categories: Sequence[str],
    palette: Any,
    summary: dict[str, Any],
    alpha: float = 0.5,
    probabilities: np.ndarray | None = None,
    overwrite: bool = False,
    write_overlay: bool = True,
) -> list[Path]:
    """Write the label PNG, overlay, probabilities (float16 npz) and JSON summary of one image.

    Refuses, before writing anything, when an output exists and `overwrite` is False. The JSON
    holds `summary` plus `classes_present` ([{index, name, pixel_fraction}]); it is written last,
    and when any write fails (or Ctrl-C arrives) the files this call wrote are removed again, so
    a JSON on disk always means a complete set.
    """
    n_classes = len(categories)
    labels = _check_labels(labels, n_classes)
    if probabilities is not None and probabilities.shape != (n_classes, *labels.shape):
        raise ValueError(
            f"probabilities must be {(n_classes, *labels.shape)} (classes, H, W), got {probabilities.shape}"
        )
    plan = OutputPlan.for_image(out_dir, relative)
    paths = plan.selected(write_overlay, probabilities is not None)
    if not overwrite:
        existing = [path for path in paths if path.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise OutputError(
                f"{existing[0]} already exists{more}: pass --overwrite to replace it or --skip-existing to skip it"
            )
    try:
        plan.labels.parent.mkdir(parents=True, exist_ok=True)
        # the JSON marks a complete set: an old one must not vouch for half-replaced images
        plan.summary.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {plan.labels.parent}: {exc.strerror or exc}") from exc

    fractions = class_fractions(labels, n_classes)
    document = dict(summary)
    document["classes_present"] = [
        {"index": int(i), "name": categories[i], "pixel_fraction": round(float(fractions[i]), 6)}
        for i in np.flatnonzero(fractions)
    ]
    writers: list[tuple[Path, Callable[[], None]]] = [
        (plan.labels, lambda: atomic_save_image(label_png(labels, palette, n_classes), plan.labels, optimize=False)),
    ]
    if write_overlay:
        writers.append((plan.overlay, lambda: atomic_save_image(
            overlay(image_rgb, labels, categories, palette, alpha), plan.overlay)))
    if probabilities is not None:
        writers.append((plan.probabilities, lambda: atomic_save_npz(
            plan.probabilities, probs=np.asarray(probabilities, dtype=np.float16),
            categories=np.array(list(categories), dtype=str))))
    writers.append((plan.summary, lambda: atomic_write_json(plan.summary, document)))
    written: list[Path] = []
    try:
        for path, write in writers:
            write()
            written.append(path)
    except BaseException:
        # disk full, Ctrl-C, an encoder error: leave no incomplete set behind (JSON is written last)
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return paths
