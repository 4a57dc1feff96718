"""Overlays: the photo's pixels stay put, the background is never painted, the legend tells every class."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageDraw

from segcli.outputs import colorize, overlay, overlay_pixels
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
    picture = overlay_pixels(image, labels, VOC, "voc", alpha=alpha)[:24, :32].astype(float)
    expected = image * (1 - alpha) + colorize(labels, "voc", 21) * alpha
    painted = labels != 0
    assert np.abs(picture[painted] - expected[painted]).max() <= 1
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
