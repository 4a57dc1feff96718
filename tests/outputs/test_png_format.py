"""segcli's PNG encoder against the PNG specification, read with a chunk walker written here
(W3C, Portable Network Graphics (PNG) Specification, https://www.w3.org/TR/png/: 5.2 signature,
5.3 chunk layout and CRC, 11.2.2 IHDR, 11.2.5 IEND, 9.2 filter type 2 "Up"), not with PIL, which
tolerates what other readers refuse. Also the provenance mark read back exactly, and refused when not ours.
Added for the mutants `make mutation` found alive (docs/TESTING.md)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from segcli.outputs.png import encode_mask_png, encode_png
from segcli.provenance import SIGNATURE, provenance_of


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    found, position = [], 8
    while position < len(png):
        (length,) = struct.unpack(">I", png[position:position + 4])
        kind, data = png[position + 4:position + 8], png[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", png[position + 8 + length:position + 12 + length])
        assert len(data) == length and crc == zlib.crc32(kind + data) & 0xFFFFFFFF, kind
        found.append((kind, data))
        position += 12 + length
    assert position == len(png)  # nothing after the last chunk
    return found


def decoded_rows(found: list[tuple[bytes, bytes]], height: int) -> np.ndarray:
    """The scanlines, unfiltered: every row says filter 2 (Up), each byte plus the one above (0 above row 0)."""
    raw = np.frombuffer(zlib.decompress(b"".join(data for kind, data in found if kind == b"IDAT")), np.uint8)
    raw = raw.reshape(height, -1)
    assert (raw[:, 0] == 2).all()
    return np.cumsum(raw[:, 1:], axis=0, dtype=np.uint64).astype(np.uint8)  # running sum modulo 256


@pytest.mark.parametrize("shape, color_type", [((5, 7), 0), ((5, 7, 3), 2), ((4, 3, 4), 6)])
def test_chunks_header_and_rows_follow_the_specification(shape, color_type):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    found = chunks(encode_png(pixels, provenance="overlay"))
    assert [kind for kind, _ in found] == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert found[0][1] == struct.pack(">IIBBBBB", shape[1], shape[0], 8, color_type, 0, 0, 0)
    assert found[-1] == (b"IEND", b"")
    np.testing.assert_array_equal(decoded_rows(found, shape[0]), pixels.reshape(shape[0], -1))


def test_palettized_and_mask_pngs_follow_the_specification():
    indices = np.arange(12, dtype=np.uint8).reshape(3, 4) % 3
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0]
    found = chunks(encode_png(indices, palette=palette, provenance="label"))
    assert [kind for kind, _ in found] == [b"IHDR", b"tEXt", b"PLTE", b"IDAT", b"IEND"]
    assert found[0][1][8:] == bytes([8, 3, 0, 0, 0]) and found[2][1] == bytes(palette)
    np.testing.assert_array_equal(decoded_rows(found, 3), indices)
    mask = np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1], [0] * 9], bool)
    found = chunks(encode_mask_png(mask, provenance="mask"))
    assert found[0][1] == struct.pack(">IIBBBBB", 9, 2, 1, 0, 0, 0, 0) and found[-1] == (b"IEND", b"")
    np.testing.assert_array_equal(np.unpackbits(decoded_rows(found, 2), axis=1)[:, :9], mask)


@pytest.mark.parametrize("text", ["label", "overlay", "mask", "é"])
def test_the_provenance_reads_back_exactly(text):
    assert provenance_of(encode_png(np.zeros((2, 2), np.uint8), provenance=text)[:256]) == text


def test_a_truncated_header_has_no_provenance_and_raises_nothing():
    png = encode_png(np.zeros((2, 2), np.uint8), provenance="label")
    ihdr_end = 8 + 8 + 13 + 4
    for length in range(0, ihdr_end + 16):
        assert provenance_of(png[:length]) is None, length
    assert provenance_of(png[:ihdr_end + 8 + len(b"segcli\0label")]) == "label"


def test_a_chunk_named_otherwise_is_not_our_mark():
    """A user's PNG whose first chunk after IHDR holds "segcli\\0..." but is not tEXt (here iTXt) is not ours."""
    png = encode_png(np.zeros((2, 2), np.uint8))
    ihdr_end = 8 + 8 + 13 + 4
    data = b"segcli\0label"
    other = struct.pack(">I", len(data)) + b"iTXt" + data + struct.pack(">I", zlib.crc32(b"iTXt" + data))
    assert provenance_of(png[:ihdr_end] + other + png[ihdr_end:]) is None
    assert provenance_of(SIGNATURE[:-1] + png[7:]) is None


@pytest.mark.parametrize("shape", [(2, 2, 3, 1), (2, 2, 5), (2, 2, 2), (4,)])
def test_arrays_that_are_no_image_are_refused(shape):
    with pytest.raises(ValueError, match=r"expected H x W, H x W x 3 or H x W x 4 uint8 pixels"):
        encode_png(np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match="^a palettized PNG takes H x W indices$"):
        encode_png(np.zeros((2, 2, 3), np.uint8), palette=[0, 0, 0])


def test_a_mask_that_is_not_two_dimensional_is_refused():
    with pytest.raises(ValueError, match=r"^expected an H x W mask, got shape \(2, 2, 2\)$"):
        encode_mask_png(np.zeros((2, 2, 2), bool))
