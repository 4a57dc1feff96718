"""Overlays: the photo's pixels stay put, the background is never painted, the legend tells every class."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageDraw

from segcli.outputs.images import colorize
from segcli.outputs.overlay import overlay, overlay_pixels
from segcli.palettes import CITYSCAPES_CLASSES, SYNTH_COLORS, VOC_CLASSES

RNG = np.random.default_rng(0)
VOC = list(VOC_CLASSES)


def sample(height: int = 24, width: int = 32):
    labels = RNG.integers(0, 21, (height, width)).astype(np.int64)
    labels[0, 0] = 255
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8), labels


def test_overlay_keeps_picture_and_adds_legend_strip():
    image, labels = sample()
    unchanged = np.asarray(overlay(image, labels, VOC, "voc", alpha=0.0))
    assert unchanged.shape[0] > 24 and unchanged.shape[1] >= 32  # a legend strip below; tiny images get a wider canvas
    np.testing.assert_array_equal(unchanged[:24, :32], image)
    assert (unchanged[24:] != 255).any()  # something is drawn in the legend


@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0])
def test_classes_blend_at_alpha_and_the_background_is_left_as_it_is(alpha):
    image, labels = sample()
    labels = np.repeat(np.repeat(labels[:6, :8], 4, 0), 4, 1)  # 4 x 4 blocks: interiors and boundaries
    picture = overlay_pixels(image, labels, VOC, "voc", alpha=alpha)[:24, :32].astype(float)
    expected = image * (1 - alpha) + colorize(labels, "voc", 21) * alpha
    painted = labels != 0
    padded = np.pad(labels, 1, mode="edge")
    edge = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):  # a differently labelled neighbour above, below, left, right
        edge |= padded[dy:dy + 24, dx:dx + 32] != labels
    assert np.abs(picture[painted & ~edge] - expected[painted & ~edge]).max() <= 1
    np.testing.assert_array_equal(picture[painted & edge], colorize(labels, "voc", 21)[painted & edge])  # outlines
    np.testing.assert_array_equal(picture[~painted], image[~painted])  # never dimmed
    if alpha == 1.0:
        np.testing.assert_array_equal(picture[painted], colorize(labels, "voc", 21)[painted])


def test_a_photo_that_is_all_background_comes_out_unchanged():
    image, _ = sample()
    picture = overlay_pixels(image, np.zeros((24, 32), np.int64), VOC, "voc", alpha=0.9)
    np.testing.assert_array_equal(picture[:24, :32], image)


def test_without_a_background_class_every_class_is_painted():
    image = np.full((4, 4, 3), 200, np.uint8)
    labels = np.zeros((4, 4), np.int64)  # Cityscapes' class 0 is "road", not background
    picture = overlay_pixels(image, labels, list(CITYSCAPES_CLASSES), "cityscapes", alpha=1.0)
    assert tuple(picture[0, 0]) == (128, 64, 128)


def test_synth_palette_colours_the_overlay():
    names = ["background", "disc", "box", "triangle", "ring", "star", "striped", "wire", "dots"]
    labels = np.arange(9).reshape(3, 3)
    picture = overlay_pixels(np.zeros((3, 3, 3), np.uint8), labels, names, "synth", alpha=1.0)
    assert [tuple(picture[i // 3, i % 3]) for i in range(1, 9)] == list(SYNTH_COLORS[1:])


def test_legend_lists_a_tiny_class_as_under_a_tenth_of_a_percent(monkeypatch):
    drawn: list[str] = []
    real_text = ImageDraw.ImageDraw.text

    def capture(self, xy, text, *args, **kwargs):
        drawn.append(text)
        return real_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", capture)
    labels = np.zeros((100, 40), np.int64)
    labels[:50] = 15
    labels[0, 0] = 8  # 1 pixel of 4000: 0.025%
    overlay(np.zeros((100, 40, 3), np.uint8), labels, VOC, "voc")
    assert drawn == ["__background__ 50.0%", "person 50.0%", "cat <0.1%"]


def test_legend_grows_with_more_classes():
    image = np.zeros((4, 4, 3), np.uint8)
    one = overlay(image, np.zeros((4, 4), np.int64), VOC, "voc")
    many = overlay(image, np.arange(16).reshape(4, 4), VOC, "voc")
    assert one.width > 4 and one.height > 4  # readable even for a 4x4 picture
    assert many.height > one.height


def test_bad_inputs_are_refused():
    image, labels = sample()
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, labels, VOC, "voc", alpha=1.5)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(image, labels[:-1], VOC, "voc")


SYNTH_NAMES = ["background", "disc", "box", "triangle", "ring", "star", "striped", "wire", "dots"]


def _blocks(n_classes: int, block: int = 12) -> np.ndarray:
    """One block x block square per class, side by side: each region has an interior and a boundary."""
    return np.repeat(np.repeat(np.arange(n_classes).reshape(1, -1), block, 0), block, 1).astype(np.int64)


def _swatch_colours(monkeypatch, image, labels, names, palette, alpha):
    """The colour at the centre of each legend swatch, read from the overlay's pixels, per class index."""
    boxes: list = []
    real_rectangle = ImageDraw.ImageDraw.rectangle

    def capture(self, xy, *args, **kwargs):
        boxes.append(xy)
        return real_rectangle(self, xy, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "rectangle", capture)
    picture = overlay_pixels(image, labels, names, palette, alpha=alpha)
    from segcli.outputs.overlay import legend_entries

    entries = legend_entries(labels, names)
    assert len(boxes) == len(entries)
    top = labels.shape[0]
    swatches = {}
    for (class_index, _, _), (x0, y0, x1, y1) in zip(entries, boxes):
        swatches[class_index] = picture[top + (y0 + y1) // 2, (x0 + x1) // 2].astype(float)
    return picture, swatches


@pytest.mark.parametrize("names,palette", [(SYNTH_NAMES, "synth"), (VOC, "voc")])
def test_each_blended_class_is_nearest_to_its_own_legend_swatch(monkeypatch, names, palette):
    labels = _blocks(len(names))
    image = np.random.default_rng(1).integers(96, 160, labels.shape + (3,), dtype=np.uint8)  # a greyish photo
    picture, swatches = _swatch_colours(monkeypatch, image, labels, names, palette, 0.5)
    painted = [index for index in swatches if index != 0]
    for index in painted:
        shown = picture[3:9, index * 12 + 3:index * 12 + 9].reshape(-1, 3).astype(float).mean(0)  # the interior
        nearest = min(painted, key=lambda other: np.linalg.norm(swatches[other] - shown))
        assert nearest == index, (names[index], shown, swatches[index], names[nearest], swatches[nearest])


@pytest.mark.parametrize("alpha", [0.3, 0.5])
def test_region_boundaries_are_outlined_in_the_full_class_colour(alpha):
    labels = _blocks(len(SYNTH_NAMES))
    image = np.full(labels.shape + (3,), 128, np.uint8)
    picture = overlay_pixels(image, labels, SYNTH_NAMES, "synth", alpha=alpha)
    for index in range(1, len(SYNTH_NAMES)):
        left = index * 12
        assert tuple(picture[6, left]) == SYNTH_COLORS[index]  # the left edge, beside another class
        if index < len(SYNTH_NAMES) - 1:  # the right edge, beside the next class (the image's edge is not outlined)
            assert tuple(picture[6, left + 11]) == SYNTH_COLORS[index]
        inner = picture[6, left + 6].astype(float)
        expected = 128 * (1 - alpha) + np.asarray(SYNTH_COLORS[index]) * alpha
        assert np.abs(inner - expected).max() <= 1  # the interior is blended
    np.testing.assert_array_equal(picture[:12, :12], image[:12, :12])  # background never painted
