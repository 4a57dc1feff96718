"""imageio at its edges: a stream handed over in pieces and cut at exactly its byte bound, the pixel-limit
messages at 0.1 MP, in-memory bytes, one-line exception text, and PIL images converted as files are."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from segcli.errors import InputImageError
from segcli import imageio
from segcli.errors import with_hint
from segcli.imageio import _one_line, load_image, load_image_bytes, pil_to_rgb, read_image_stream, stream_byte_cap

TINY = Image.fromarray(np.array([[[10, 200, 30]]], np.uint8))  # 1x1


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A grey PNG whose header claims width x height (its one row of data is never decoded: the limit comes first).
    Chunk layout from the PNG specification (https://www.w3.org/TR/png/#5Chunk-layout)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


class Pipe(io.RawIOBase):
    """`data`, then `fill` up to `total` bytes, handed over at most `piece` bytes a read (as a pipe does)."""

    def __init__(self, data: bytes, total: int | None = None, piece: int = 1 << 20, fill: bytes = b"\0") -> None:
        self.data, self.total, self.piece, self.fill, self.position = data, total or len(data), piece, fill, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self.piece, self.total - self.position)
        if size <= 0:
            return 0
        block = self.data[self.position:self.position + size]
        block += self.fill * (size - len(block))
        buffer[:size] = block
        self.position += size
        return size


def test_a_stream_in_small_pieces_is_read_whole():
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)  # a PNG past the 4096-byte header
    data = png_bytes(Image.fromarray(pixels))
    assert len(data) > 4096
    loaded = read_image_stream(Pipe(data, piece=1000))
    np.testing.assert_array_equal(loaded.rgb, pixels)
    assert loaded.path.name == "stdin"


def test_the_header_of_a_stream_is_its_first_4096_bytes_however_they_arrive():
    for piece in (100, 4095, 4096, 5000):
        stream = Pipe(b"", total=1_000_000, piece=piece, fill=b"y\n")
        with pytest.raises(InputImageError) as raised:
            read_image_stream(stream, "-")
        assert str(raised.value) == ("- is not an image segcli can read: not a supported format "
                                     "(segcli reads JPEG, PNG, BMP, GIF, TIFF, WebP, PPM/PGM)")
        assert stream.position == 4096, piece


def test_a_stream_of_exactly_the_byte_bound_is_read_and_one_byte_more_is_refused(monkeypatch):
    assert stream_byte_cap(1) == 1 * 8 + 16 * 2**20  # one pixel at 8 bytes, and 16 MiB of headroom
    monkeypatch.setattr(imageio, "STREAM_HEADROOM", 2**20)  # 1 MiB, to keep the test small
    cap = 8 + 2**20
    data = png_bytes(TINY)
    exact = Pipe(data, total=cap)  # the PNG, then zeros after its end chunk (Pillow reads to IEND only)
    np.testing.assert_array_equal(read_image_stream(exact, "stdin", max_pixels=1).rgb, [[[10, 200, 30]]])
    assert exact.position == cap
    over = Pipe(data, total=cap + 1_000_000)
    with pytest.raises(InputImageError) as raised:
        read_image_stream(over, "stdin", max_pixels=1)
    assert str(raised.value) == ("stdin is over 1,048,584 bytes, the most an image within the limit of 1 pixels "
                                 "(max_pixels) can take (8 bytes a pixel + 1 MiB)")  # a library caller's text
    assert with_hint(raised.value) == str(raised.value) + "; raise --max-pixels, or pass the file's path"  # the CLI's
    assert over.position == cap + 1  # read one byte past the bound, no more


def test_a_stream_image_over_the_pixel_limit_is_refused_by_its_name():
    with pytest.raises(InputImageError) as raised:
        read_image_stream(Pipe(png_bytes(Image.new("RGB", (16, 12)))), "stdin", max_pixels=100)
    assert str(raised.value) == "stdin is 16x12 = 192 pixels, above the 100 pixels limit (max_pixels)"
    assert with_hint(raised.value) == str(raised.value) + "; raise it with --max-pixels"
    with pytest.raises(InputImageError, match=r"^stdin is empty \(0 bytes\)$"):
        read_image_stream(Pipe(b""))


@pytest.mark.parametrize("width, height, limit, message", [
    (400, 250, 99_999, "400x250 = 0.1 MP, above the 99,999 pixels limit"),       # 100,000 pixels: in MP
    (369, 271, 1_000, "369x271 = 99,999 pixels, above the 1,000 pixels limit"),  # one fewer: counted
    (2000, 1500, 2_500_000, "2000x1500 = 3.0 MP, above the 2.5 MP limit"),
])
def test_the_pixel_limit_message_counts_pixels_below_a_tenth_of_a_megapixel(tmp_path, width, height, limit, message):
    path = tmp_path / "big.png"
    path.write_bytes(png_header(width, height))
    with pytest.raises(InputImageError) as raised:
        load_image(path, max_pixels=limit)
    assert str(raised.value) == f"{path} is {message} (max_pixels)"
    assert with_hint(raised.value) == f"{path} is {message} (max_pixels); raise it with --max-pixels"


def test_bytes_in_memory_are_named_in_messages():
    with pytest.raises(InputImageError) as raised:
        load_image_bytes(b"")
    assert str(raised.value) == "<bytes> is empty (0 bytes)"
    with pytest.raises(InputImageError) as raised:
        load_image_bytes(b"", "upload.png")
    assert str(raised.value) == "upload.png is empty (0 bytes)"
    with pytest.raises(InputImageError, match=r"^<bytes> is not an image segcli can read"):
        load_image_bytes(b"plain text")
    with pytest.raises(InputImageError, match=r"^a\.png is 16x12 = 192 pixels, above the 100 pixels limit"):
        load_image_bytes(png_bytes(Image.new("RGB", (16, 12))), "a.png", max_pixels=100)
    np.testing.assert_array_equal(load_image_bytes(png_bytes(TINY)).rgb, [[[10, 200, 30]]])


def test_exception_text_is_one_line_or_the_exception_type():
    assert _one_line(ValueError("bad\n  chunk\tdata ")) == "bad chunk data"
    assert _one_line(KeyError()) == "KeyError"
    assert _one_line(OSError("")) == "OSError"


def test_a_pil_image_is_converted_as_a_file_is(tmp_path):
    # RGBA on white: (c * a + 255 * (255 - a) + 127) // 255, by hand for alpha 128
    rgba = Image.fromarray(np.array([[[200, 100, 0, 128], [1, 2, 3, 255]]], np.uint8), "RGBA")
    rgb = pil_to_rgb(rgba)
    np.testing.assert_array_equal(rgb, [[[227, 177, 127], [1, 2, 3]]])
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous and rgb.flags.writeable
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the top-left pixel goes to the top right
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "turned.png").write_bytes(png_bytes(Image.fromarray(stored), exif=exif))
    with Image.open(tmp_path / "turned.png") as image:
        displayed = pil_to_rgb(image)
    assert displayed.shape == (3, 2, 3) and tuple(displayed[0, 1]) == (255, 0, 0) and displayed.sum() == 255
    np.testing.assert_array_equal(displayed, load_image(tmp_path / "turned.png").rgb)
    with pytest.raises(InputImageError) as raised:
        pil_to_rgb(Image.new("La", (2, 2)))
    assert str(raised.value).startswith("<PIL image>: colour mode La is not supported (")
