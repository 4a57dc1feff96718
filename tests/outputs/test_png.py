"""segcli's PNG encoder: pixels read back exactly by PIL; the provenance mark is found from the header."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from segcli.outputs.png import encode_png
from segcli.provenance import provenance_of, written_by_segcli
from segcli.palettes import flat_palette

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (37, 64, 3), (9, 1, 3)])
def test_rgb_reads_back_exactly(shape):
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    back = Image.open(io.BytesIO(encode_png(pixels, provenance="overlay")))
    assert back.mode == "RGB" and back.text == {"segcli": "overlay"}
    np.testing.assert_array_equal(np.asarray(back), pixels)


def test_palettized_reads_back_indices_and_palette():
    indices = RNG.integers(0, 21, (30, 40), dtype=np.uint8)
    indices[0, :5] = 255
    palette = flat_palette("voc", 21)
    back = Image.open(io.BytesIO(encode_png(indices, palette=palette, provenance="label")))
    assert back.mode == "P" and back.getpalette() == palette
    np.testing.assert_array_equal(np.asarray(back), indices)


def test_grey_reads_back_and_no_mark_without_provenance():
    pixels = RNG.integers(0, 256, (6, 4), dtype=np.uint8)
    data = encode_png(pixels)
    back = Image.open(io.BytesIO(data))
    assert back.mode == "L" and provenance_of(data) is None
    np.testing.assert_array_equal(np.asarray(back), pixels)


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="H x W indices"):
        encode_png(np.zeros((2, 2, 3), np.uint8), palette=[0] * 768)


def test_written_by_segcli_tells_its_pngs_from_others(tmp_path):
    ours = tmp_path / "ours.png"
    ours.write_bytes(encode_png(np.zeros((3, 3), np.uint8), palette=[0] * 768, provenance="label"))
    theirs = tmp_path / "theirs.png"
    Image.new("RGB", (3, 3)).save(theirs)
    tagged_by_someone = tmp_path / "tagged.png"
    info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    info.add_text("Software", "segcli")
    Image.new("RGB", (3, 3)).save(tagged_by_someone, pnginfo=info)
    (tmp_path / "text.png").write_text("hello")
    assert written_by_segcli(ours)
    assert not written_by_segcli(theirs) and not written_by_segcli(tagged_by_someone)
    assert not written_by_segcli(tmp_path / "text.png") and not written_by_segcli(tmp_path / "missing.png")
