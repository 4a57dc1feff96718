"""Label images: exact class indices in palettized PNGs, colours, pixel fractions, percentages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segcli.outputs.images import atomic_save_image, class_fractions, colorize, label_png, percent_text
from segcli.palettes import voc_colors

RNG = np.random.default_rng(0)


def test_label_png_reads_back_exact_values_and_voc_colours(tmp_path):
    labels = RNG.integers(0, 21, (24, 32)).astype(np.int64)
    labels[0, 0] = 255
    path = tmp_path / "mask.png"
    atomic_save_image(label_png(labels, "voc", 21), path)
    back = Image.open(path)
    assert back.mode == "P"
    np.testing.assert_array_equal(np.asarray(back), labels)
    palette = back.getpalette()
    for index in (0, 1, 15, 20):
        assert tuple(palette[3 * index:3 * index + 3]) == voc_colors()[index]
    assert tuple(palette[3 * 255:3 * 255 + 3]) == (224, 224, 192)
    assert tuple(voc_colors()[15]) == (192, 128, 128)  # person, the well-known VOC colour
    with pytest.raises(ValueError, match="outside 0..20"):
        label_png(np.full((2, 2), 21), "voc", 21)


def test_colorize_matches_palette_and_fractions_count_pixels():
    labels = np.array([[0, 1, 1], [15, 255, 1]])
    colours = colorize(labels, "voc", 21)
    assert colours.shape == (2, 3, 3) and tuple(colours[1, 0]) == (192, 128, 128)
    np.testing.assert_allclose(class_fractions(labels, 21)[[0, 1, 15, 2]], [1 / 6, 3 / 6, 1 / 6, 0])


@pytest.mark.parametrize("fraction, text", [
    (0.0, "0.0%"), (0.0001, "<0.1%"), (0.000499, "<0.1%"), (0.0005, "0.1%"), (0.123, "12.3%"), (1.0, "100.0%"),
])
def test_percent_text_never_says_zero_for_a_class_present(fraction, text):
    assert percent_text(fraction) == text
