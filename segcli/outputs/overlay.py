"""Overlays: class colours blended over the photo (background left as it is), each region outlined in
its full class colour, and a legend strip below whose swatches look like the overlay's regions."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segcli.outputs.images import check_labels, class_fractions, percent_text
from segcli.palettes import IGNORE_INDEX, background_index, palette_colors

IGNORE_NAME = "ignore"
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
SWATCH_GREY = (128, 128, 128)  # the neutral photo a legend swatch blends its class colour over


def overlay_pixels(
    image_rgb: np.ndarray,
    labels: np.ndarray,
    categories: Sequence[str],
    palette: Any,
    alpha: float = 0.5,
) -> np.ndarray:
    """H' x W' x 3 uint8: the photo with class colours blended in at `alpha`, and a legend strip below.

    Each class region's boundary (1 px, 2 px on images 512 px and larger) is drawn in the full class
    colour, so neighbouring regions stay apart; each legend swatch is the class colour blended at
    `alpha` over a neutral grey inside a full-colour frame: what the regions look like (alpha 0
    draws neither colours nor outlines). The
    background class (named "background"/"__background__") is not painted, so a photo is never
    dimmed by `alpha`; its legend swatch is left empty. The picture keeps its pixels at the
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
    if alpha > 0:  # alpha 0: the photo as it is
        outline(picture, labels, colors, background)
    strip = legend_strip(picture.shape[1], legend_entries(labels, categories), colors, background, alpha)
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


def boundary_mask(labels: np.ndarray, width: int) -> np.ndarray:
    """True where a pixel has a differently labelled pixel within `width` steps up, down, left or right."""
    mask = np.zeros(labels.shape, dtype=bool)
    for step in range(1, width + 1):
        vertical = labels[step:] != labels[:-step]
        mask[step:] |= vertical
        mask[:-step] |= vertical
        horizontal = labels[:, step:] != labels[:, :-step]
        mask[:, step:] |= horizontal
        mask[:, :-step] |= horizontal
    return mask


def outline(picture: np.ndarray, labels: np.ndarray, colors: list, background: int | None) -> None:
    """Paint each painted region's boundary pixels in the full class colour, in place."""
    width = 2 if min(labels.shape) >= 512 else 1
    edge = boundary_mask(labels, width)
    if background is not None:
        edge &= labels != background
    picture[edge] = np.asarray(colors, dtype=np.uint8)[labels[edge]]


def swatch_colour(color: Sequence[int], alpha: float) -> tuple[int, int, int]:
    """The class colour blended at `alpha` over SWATCH_GREY, as the overlay blends it over a photo."""
    return tuple(int(round(g * (1 - alpha) + c * alpha)) for g, c in zip(SWATCH_GREY, color))  # type: ignore


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
    alpha: float = 0.5,
) -> np.ndarray:
    """The white legend strip (swatch, name, pixel %) as rows of H x W x 3 pixels, W >= picture_width."""
    font = _legend_font(picture_width)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = measure.textbbox((0, 0), "Ag%", font=font)[3] + 2
    swatch = line_height
    frame = max(2, swatch // 6)
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
                box = [x, y, x + swatch - 1, y + swatch - 1]
                if class_index == background:  # not painted
                    draw.rectangle(box, fill=_WHITE, outline=_BLACK)
                else:
                    color = tuple(colors[class_index])
                    draw.rectangle(box, fill=swatch_colour(color, alpha), outline=color, width=frame)
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
