"""Hostile and broken image files: only the formats segcli claims are decoded, every decoding failure is one
InputImageError, and an image piped on stdin is read header first, within a byte bound.

Pillow picks a decoder by the file's content, not its name (https://pillow.readthedocs.io/en/stable/reference/
Image.html#PIL.Image.open, `formats`), so a PostScript file named photo.jpg would be handed to Ghostscript.
"""

from __future__ import annotations

import io
import os
import random
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from segcli.errors import InputImageError
from segcli.imageio import ACCEPTED_FORMATS, load_image, load_image_bytes, load_label_png, read_image_stream, \
    stream_byte_cap

RNG = np.random.default_rng(0)
PHOTO = Image.fromarray(RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8))


def encoded(image: Image.Image, image_format: str, **kwargs) -> bytes:
    stream = io.BytesIO()
    image.save(stream, format=image_format, **kwargs)
    return stream.getvalue()


def fake_ghostscript(tmp_path: Path, monkeypatch) -> Path:
    """A `gs` first on PATH that only leaves a marker file; Pillow forgets any gs it found before."""
    marker = tmp_path / "gs-was-run"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gs"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> '{marker}'\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return marker


def dds_bytes() -> bytes:
    """A DirectDraw Surface header with a FourCC Pillow does not implement (NotImplementedError when opened)."""
    header = bytearray(124)
    struct.pack_into("<IIIII", header, 0, 124, 0x1007, 8, 8, 0)
    struct.pack_into("<II4s", header, 72, 32, 0x4, b"ZZZZ")
    return b"DDS " + bytes(header) + bytes(64)


def blp_bytes() -> bytes:
    """A BLP1 texture with compression 5 (Pillow's BLPFormatError when decoded)."""
    return b"BLP1" + struct.pack("<IIIIII", 5, 0, 8, 8, 5, 0) + bytes(16 * 4 * 2) + bytes(64)


def tiff_with_a_broken_second_page() -> bytes:
    """A valid TIFF whose next-IFD pointer leads to a page without dimensions (Pillow: TypeError)."""
    data = bytearray(encoded(PHOTO, "TIFF"))
    first = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first)[0]
    next_pointer = first + 2 + 12 * entries
    struct.pack_into("<I", data, next_pointer, len(data))
    data += struct.pack("<HHHII", 1, 0x0103, 3, 1, 1) + struct.pack("<I", 0)  # one entry: compression = none
    return bytes(data)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_with_a_broken_second_chunk(height: int = 12, width: int = 16) -> bytes:
    """A grey PNG whose image data goes on in a chunk with an invalid name (Pillow: SyntaxError while decoding)."""
    raw = b"".join(b"\0" + bytes((x + y) % 3 for x in range(width)) for y in range(height))
    data = zlib.compress(raw)
    half = len(data) // 2
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data[:half]) + chunk(b"\x00\x01\x02\x03", data[half:]) + chunk(b"IEND", b""))


def test_a_postscript_file_named_jpg_is_refused_and_ghostscript_never_runs(tmp_path, monkeypatch):
    marker = fake_ghostscript(tmp_path, monkeypatch)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encoded(Image.new("RGB", (8, 8), (200, 10, 10)), "EPS"))
    with pytest.raises(InputImageError, match=r"photo\.jpg is not an image segcli can read: not a supported format"):
        load_image(photo)
    assert not marker.exists()


@pytest.mark.parametrize("name, data", [("sprite.png", dds_bytes()), ("texture.jpg", blp_bytes())],
                         ids=["dds", "blp"])
def test_formats_segcli_does_not_claim_are_refused_by_content(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputImageError, match="not a supported format"):
        load_image(path)


def test_a_tiff_with_a_broken_second_page_is_one_image_error(tmp_path):
    path = tmp_path / "scan.tif"
    path.write_bytes(tiff_with_a_broken_second_page())
    with pytest.raises(InputImageError, match=r"scan\.tif: cannot decode image"):
        load_image(path)


def test_a_broken_mask_png_is_one_image_error(tmp_path):
    path = tmp_path / "mask.png"
    path.write_bytes(png_with_a_broken_second_chunk())
    with pytest.raises(InputImageError, match=r"mask\.png: cannot decode image"):
        load_label_png(path)


def test_a_valid_mask_png_reads_as_its_indices(tmp_path):
    indices = RNG.integers(0, 21, (9, 7), dtype=np.uint8)
    path = tmp_path / "mask.png"
    Image.fromarray(indices, "L").save(path)
    np.testing.assert_array_equal(load_label_png(path), indices)
    jpeg = tmp_path / "mask-as.png"
    jpeg.write_bytes(encoded(Image.fromarray(indices, "L"), "JPEG"))
    with pytest.raises(InputImageError, match="not a supported format"):
        load_label_png(jpeg)  # masks are PNGs: lossy label values would be wrong classes


def test_memory_errors_are_not_turned_into_image_errors(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    data = encoded(PHOTO, "PNG")
    monkeypatch.setattr(Image.Image, "load", out_of_memory)  # Pillow's decoders end in Image.load
    with pytest.raises(MemoryError):
        load_image_bytes(data, "big.png")


SAMPLES = {  # one valid small image of each accepted format (the list the loader decodes)
    "JPEG": lambda: encoded(PHOTO, "JPEG", quality=90),
    "PNG": lambda: encoded(PHOTO, "PNG"),
    "BMP": lambda: encoded(PHOTO, "BMP"),
    "GIF": lambda: encoded(PHOTO, "GIF"),
    "TIFF": lambda: encoded(PHOTO, "TIFF", compression="tiff_lzw"),
    "WEBP": lambda: encoded(PHOTO, "WEBP", quality=90),
    "PPM": lambda: encoded(PHOTO, "PPM"),
}


def test_the_fuzz_samples_cover_every_accepted_format():
    assert set(SAMPLES) == set(ACCEPTED_FORMATS)


def damaged_copies(data: bytes, count: int, seed: int):
    """`count` copies of `data` with 1-4 random bytes replaced, about a third of them also truncated."""
    draw = random.Random(seed)
    for _ in range(count):
        copy = bytearray(data)
        for _ in range(draw.randint(1, 4)):
            copy[draw.randrange(len(copy))] = draw.randrange(256)
        if draw.random() < 0.35:
            copy = copy[:draw.randrange(1, len(copy))]
        yield bytes(copy)


@pytest.mark.filterwarnings("ignore")  # Pillow warns about corrupt EXIF and truncated reads
@pytest.mark.parametrize("image_format", sorted(SAMPLES))
def test_damaged_files_decode_to_rgb_or_raise_the_image_error_only(image_format):
    data = SAMPLES[image_format]()
    assert load_image_bytes(data, "valid").rgb.shape == (12, 16, 3)
    outcomes = {"decoded": 0, "refused": 0}
    for copy in damaged_copies(data, 50, seed=len(image_format)):
        try:
            rgb = load_image_bytes(copy, "damaged").rgb
        except InputImageError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
            continue
        with Image.open(io.BytesIO(copy)) as header:
            width, height = header.size
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous
        assert rgb.shape[:2] in {(height, width), (width, height)}
        outcomes["decoded"] += 1
    assert sum(outcomes.values()) == 50


class CountingStream(io.RawIOBase):
    """`total` bytes of `head` followed by `fill` repeated, generated as read; counts what was read."""

    def __init__(self, head: bytes, fill: bytes, total: int) -> None:
        self.head, self.fill, self.total, self.position = head, fill, total, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self.total - self.position)
        if size <= 0:
            return 0
        start = self.position
        block = self.head[start:start + size]
        if len(block) < size:
            offset = (start + len(block) - len(self.head)) % len(self.fill)
            repeats = (offset + size - len(block)) // len(self.fill) + 2
            block += (self.fill * repeats)[offset:offset + size - len(block)]
        buffer[:size] = block
        self.position += size
        return size


def test_a_stream_of_text_lines_is_refused_from_its_header():
    stream = CountingStream(b"", b"y\n", 50_000_000)  # what `yes |` sends, bounded
    started = time.perf_counter()
    with pytest.raises(InputImageError, match="stdin is not an image segcli can read: not a supported format"):
        read_image_stream(stream, "stdin")
    assert stream.position <= 64 * 1024
    assert time.perf_counter() - started < 2.0


def test_a_stream_over_the_byte_bound_is_refused_without_reading_it_all():
    cap = stream_byte_cap(1000)
    assert cap == 1000 * 8 + 16 * 1024 * 1024
    stream = CountingStream(encoded(PHOTO, "PNG"), b"\0", 40_000_000)
    with pytest.raises(InputImageError, match=r"stdin is over 16,785,216 bytes, the most an image within the limit of 1,000 pixels \(max_pixels\)"):
        read_image_stream(stream, "stdin", max_pixels=1000)
    assert stream.position <= cap + 2 * 1024 * 1024


@pytest.mark.parametrize("image_format", sorted(SAMPLES))
def test_every_accepted_format_passes_the_stream_header_check(image_format):
    data = SAMPLES[image_format]()
    loaded = read_image_stream(CountingStream(data, b"\0", len(data)), "stdin")
    np.testing.assert_array_equal(loaded.rgb, load_image_bytes(data, "file").rgb)


def test_an_empty_stream_is_named_empty():
    with pytest.raises(InputImageError, match=r"stdin is empty \(0 bytes\)"):
        read_image_stream(CountingStream(b"", b"\0", 0), "stdin")


def test_pillow_opens_files_in_one_place_only():
    """Every image segcli reads goes through segcli/imageio.py, where the accepted formats are set."""
    package = Path(__file__).resolve().parents[1] / "segcli"
    callers = sorted(path.relative_to(package).as_posix() for path in package.rglob("*.py")
                     if "Image.open(" in path.read_text(encoding="utf-8"))
    assert callers == ["imageio.py"]


def test_a_pillow_without_one_of_the_formats_still_names_other_files_unsupported(monkeypatch):
    Image.init()
    monkeypatch.delitem(Image.OPEN, "WEBP")  # as a Pillow built without libwebp
    with pytest.raises(InputImageError, match="not a supported format"):
        load_image_bytes(dds_bytes(), "sprite.png")
    assert load_image_bytes(SAMPLES["PNG"](), "a.png").rgb.shape == (12, 16, 3)


@pytest.mark.filterwarnings("ignore")
def test_damaged_mask_pngs_read_as_indices_or_raise_the_image_error_only(tmp_path):
    indices = RNG.integers(0, 21, (12, 16), dtype=np.uint8)
    data = encoded(Image.fromarray(indices, "L").convert("P"), "PNG")
    path = tmp_path / "mask.png"
    for copy in damaged_copies(data, 60, seed=3):
        path.write_bytes(copy)
        try:
            mask = load_label_png(path)
        except InputImageError as exc:
            assert "\n" not in str(exc)
            continue
        assert mask.dtype == np.uint8 and mask.ndim == 2


def test_a_damaged_file_of_an_accepted_format_is_named_damaged_not_unsupported():
    data = bytearray(encoded(PHOTO, "TIFF"))
    struct.pack_into("<I", data, 4, len(data) + 100)  # the first page's directory lies past the end
    with pytest.raises(InputImageError, match="scan.tif: cannot read image header, the TIFF file is damaged"):
        load_image_bytes(bytes(data), "scan.tif")


def test_pillows_warnings_about_a_file_go_to_its_note_not_to_stderr():
    data = bytearray(encoded(PHOTO, "TIFF"))
    first = struct.unpack_from("<I", data, 4)[0]
    for index in range(struct.unpack_from("<H", data, first)[0]):
        entry = first + 2 + 12 * index
        if struct.unpack_from("<H", data, entry)[0] == 284:  # PlanarConfiguration (1, the default) becomes
            struct.pack_into("<HHII", data, entry, 305, 2, 100, 0xFFFF0)  # Software, its text past the end
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        loaded = load_image_bytes(bytes(data), "tagged.tif")
    assert shown == []
    np.testing.assert_array_equal(loaded.rgb, np.asarray(PHOTO))
    assert loaded.note == "decoder warning: Truncated File Read"


def test_warnings_from_elsewhere_while_decoding_are_still_shown(monkeypatch):
    """catch_warnings is process-wide: a warning of another thread's work (a model's) must not become a note."""
    from PIL import ImageFile

    real_load = ImageFile.ImageFile.load

    def load_and_warn_elsewhere(self):
        warnings.warn("a model's warning", UserWarning)  # raised from this test file, not from Pillow
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_and_warn_elsewhere)
    with pytest.warns(UserWarning, match="a model's warning"):
        loaded = load_image_bytes(encoded(PHOTO, "PNG"), "a.png")
    assert loaded.note is None
