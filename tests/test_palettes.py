"""Palettes: the synthetic classes get colours far apart and visible on dark and light photos."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segcli.errors import UnknownNameError
from segcli.palettes import (
    CITYSCAPES_CLASSES, SYNTH_COLORS, VOC_CLASSES, background_index, display_palette, palette_colors,
)


def relative_luminance(rgb) -> float:
    channel = np.asarray(rgb, float) / 255
    linear = np.where(channel <= 0.04045, channel / 12.92, ((channel + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def cielab(rgb) -> np.ndarray:
    """sRGB (D65) -> CIELAB, written out from the CIE formulas."""
    channel = np.asarray(rgb, float) / 255
    linear = np.where(channel <= 0.04045, channel / 12.92, ((channel + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz /= [0.95047, 1.0, 1.08883]
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_synth_colours_are_far_apart():
    classes = SYNTH_COLORS[1:]
    assert len(classes) == 8 and len(set(classes)) == 8
    closest = min(np.linalg.norm(cielab(a) - cielab(b)) for a, b in itertools.combinations(classes, 2))
    assert closest >= 40  # CIE76 units; ~2.3 is a just-noticeable difference


@pytest.mark.parametrize("color", SYNTH_COLORS[1:])
def test_each_synth_colour_stands_out_on_black_and_on_white(color):
    luminance = relative_luminance(color)
    assert (luminance + 0.05) / 0.05 >= 2.5   # WCAG contrast against black
    assert 1.05 / (luminance + 0.05) >= 2.5   # and against white


def test_voc_dark_colours_are_what_the_synth_palette_replaces():
    """The VOC colours the synthetic classes had before: several vanish on a dark photo."""
    voc = palette_colors("voc", 9)[1:9]
    assert min((relative_luminance(c) + 0.05) / 0.05 for c in voc) < 2.5


def test_display_palette_picks_the_synth_colours_by_dataset():
    assert display_palette("voc", "segcli-synth") == "synth"
    assert display_palette(None, "segcli-synth") == "synth"
    assert display_palette("cityscapes", "segcli-synth") == "cityscapes"  # chosen on purpose: kept
    assert display_palette("voc", "VOC2012-aug") == "voc"
    assert palette_colors("synth", 9)[1:9] == list(SYNTH_COLORS[1:])


def test_background_index_by_name():
    assert background_index(VOC_CLASSES) == 0
    assert background_index(("background", "disc")) == 0
    assert background_index(CITYSCAPES_CLASSES) is None
    assert background_index(("sky", "Background")) == 1


def test_unknown_palette_names_the_choices():
    with pytest.raises(UnknownNameError, match="'voc', 'cityscapes', 'synth'"):
        palette_colors("rainbow", 3)
