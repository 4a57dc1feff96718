"""Overlays: class colours blended over the photo (background left as it is), a legend strip below."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segcli.outputs.images import check_labels, class_fractions, percent_text
from segcli.palettes import IGNORE_INDEX, background_index, palette_colors

IGNORE_NAME = "ignore"
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)


def overlay_pixels(
    image_rgb: np.ndarray,
    labels: np.ndarray,
    categories: Sequence[str],
    palette: Any,
    alpha: float = 0.5,
) -> np.ndarray:
    """H' x W' x 3 uint8: the photo with class colours blended in at `alpha`, and a legend strip below.

    The background class (named "background"/"__background__") is not painted, so a photo is
    never dimmed by `alpha`; its legend swatch is left empty. The picture keeps its pixels at the
    top-left; tiny images get a wider canvas so the legend stays readable.
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {image_rgb.dtype} {image_rgb.shape}")
    if labels.shape != image_rgb.shape[:2]:
        raise ValueError(f"labels {labels.shape} and image {image_rgb.shape[:2]} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}")
    labels = check_labels(labels, len(categories))
    colors = palette_colors(palette, len(categories))
    background = background_index(categories)
    picture = blend(image_rgb, labels, colors, alpha, background)
    strip = legend_strip(picture.shape[1], legend_entries(labels, categories), colors, background)
    canvas = np.full((picture.shape[0] + strip.shape[0], strip.shape[1], 3), 255, dtype=np.uint8)
    canvas[:picture.shape[0], :picture.shape[1]] = picture
    canvas[picture.shape[0]:] = strip
    return canvas


def overlay(
    image_rgb: np.ndarray, labels: np.ndarray, categories: Sequence[str], palette: Any, alpha: float = 0.5,
) -> Image.Image:
    """`overlay_pixels` as a PIL image."""
    return Image.fromarray(overlay_pixels(image_rgb, labels, categories, palette, alpha), "RGB")


def blend(image_rgb: np.ndarray, labels: np.ndarray, colors: list, alpha: float, background: int | None) -> np.ndarray:
    """round(image * (1 - alpha) + colour * alpha) per pixel, in 8-bit fixed point; background untouched."""
    weights = np.full(256, round(alpha * 256), dtype=np.uint16)
    if background is not None:
        weights[background] = 0
    lookup = np.asarray(colors, dtype=np.uint16)
    painted = weights[labels] != 0
    if painted.mean() > 0.5:  # mostly painted: one pass over every pixel is cheaper than picking them out
        return _mix(image_rgb, labels, weights, lookup)
    picture = image_rgb.copy()
    picture[painted] = _mix(image_rgb[painted], labels[painted], weights, lookup)
    return picture


def _mix(pixels: np.ndarray, labels: np.ndarray, weights: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    weight = weights[labels][..., None]
    mixed = pixels.astype(np.uint16) * (256 - weight)
    mixed += lookup[labels] * weight
    mixed += 128
    return (mixed >> 8).astype(np.uint8)


def legend_entries(labels: np.ndarray, categories: Sequence[str]) -> list[tuple[int, str, float]]:
    """(class index, name, pixel fraction) of the classes present, most pixels first."""
    fractions = class_fractions(labels, len(categories))
    entries = [(int(i), categories[i], float(fractions[i])) for i in np.flatnonzero(fractions)]
    ignored = float(np.count_nonzero(labels == IGNORE_INDEX)) / max(labels.size, 1)
    if ignored > 0:
        entries.append((IGNORE_INDEX, IGNORE_NAME, ignored))
    return sorted(entries, key=lambda entry: (-entry[2], entry[0]))


def _legend_font(image_width: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font, scaled with the image where FreeType is available (11..40 px)."""
    size = int(min(40, max(11, image_width / 60)))
    return ImageFont.load_default(size=size)


def legend_strip(
    picture_width: int, entries: list[tuple[int, str, float]], colors: list, background: int | None,
) -> np.ndarray:
    """The white legend strip (swatch, name, pixel %) as rows of H x W x 3 pixels, W >= picture_width."""
    font = _legend_font(picture_width)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = measure.textbbox((0, 0), "Ag%", font=font)[3] + 2
    swatch = line_height
    pad = max(4, line_height // 3)
    texts = [f"{name} {percent_text(fraction)}" for _, name, fraction in entries] or ["no classes"]
    widths = [swatch + pad + int(measure.textlength(text, font=font)) for text in texts]
    canvas_width = max(picture_width, max(widths) + 2 * pad)
    rows = _wrap(widths, canvas_width, pad)
    strip = Image.new("RGB", (canvas_width, len(rows) * (line_height + pad) + pad), _WHITE)
    draw = ImageDraw.Draw(strip)
    y = pad
    for row in rows:
        x = pad
        for index in row:
            if entries:
                class_index = entries[index][0]
                fill = _WHITE if class_index == background else tuple(colors[class_index])  # not painted
                draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=fill, outline=_BLACK)
            draw.text((x + swatch + pad, y), texts[index], fill=_BLACK, font=font)
            x += widths[index] + 2 * pad
        y += line_height + pad
    return np.asarray(strip)


def _wrap(widths: list[int], canvas_width: int, pad: int) -> list[list[int]]:
    """Entry indices per row, wrapped at the canvas width."""
    rows: list[list[int]] = [[]]
    x = pad
    for index, width in enumerate(widths):
        if rows[-1] and x + width + pad > canvas_width:
            rows.append([])
            x = pad
        rows[-1].append(index)
        x += width + 2 * pad
    return rows
