"""Decoding: every odd file becomes RGB uint8 or one clear InputImageError (discovery: test_inputs.py)."""

from __future__ import annotations

import os
import pathlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from segcli.errors import InputImageError
from segcli.imageio import load_image
from segcli.inputs import find_images

RNG = np.random.default_rng(0)


def random_rgb(height: int, width: int) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A small PNG whose IHDR claims width x height (CRC fixed), i.e. a decompression bomb header."""
    buffer = path.with_suffix(".small.png")
    Image.new("L", (8, 8)).save(buffer)
    data = bytearray(buffer.read_bytes())
    ihdr_start = 8 + 8  # signature, then chunk length + type
    data[ihdr_start:ihdr_start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr_start + 13])) & 0xFFFFFFFF
    data[ihdr_start + 13:ihdr_start + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


# --- load_image: good files of every kind ---------------------------------------------------

def test_rgb_roundtrip_is_exact_contiguous_and_writable(tmp_path):
    rgb = random_rgb(5, 7)
    loaded = load_image(save(Image.fromarray(rgb), tmp_path / "a.png"))
    np.testing.assert_array_equal(loaded.rgb, rgb)
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.flags.c_contiguous and loaded.rgb.flags.writeable
    assert loaded.note is None


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1)])
def test_tiny_and_thin_images(tmp_path, size):
    rgb = random_rgb(*size)
    loaded = load_image(save(Image.fromarray(rgb), tmp_path / "thin.bmp"))
    np.testing.assert_array_equal(loaded.rgb, rgb)


def test_grayscale_and_one_bit(tmp_path):
    grey = RNG.integers(0, 256, (6, 4), dtype=np.uint8)
    loaded = load_image(save(Image.fromarray(grey, "L"), tmp_path / "grey.pgm"))
    np.testing.assert_array_equal(loaded.rgb, np.repeat(grey[:, :, None], 3, axis=2))
    bits = Image.fromarray(grey > 128).convert("1")
    loaded = load_image(save(bits, tmp_path / "bits.png"))
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], np.where(grey > 128, 255, 0))


def test_palette_image(tmp_path):
    palette_image = Image.fromarray(random_rgb(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=5)
    path = save(palette_image, tmp_path / "pal.gif")
    np.testing.assert_array_equal(load_image(path).rgb, np.asarray(Image.open(path).convert("RGB")))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = [[[10, 20, 30]] * 3] * 2
    rgba[..., 3] = [[0, 128, 255], [255, 0, 64]]
    loaded = load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png"))
    alpha = rgba[..., 3:4].astype(float) / 255
    expected = np.rint(rgba[..., :3] * alpha + 255 * (1 - alpha))
    np.testing.assert_allclose(loaded.rgb, expected, atol=1)
    assert tuple(loaded.rgb[0, 0]) == (255, 255, 255) and tuple(loaded.rgb[0, 2]) == (10, 20, 30)


def test_sixteen_bit_grey_is_scaled(tmp_path):
    values = np.array([[0, 65535, 32768, 257 * 100]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_array_equal(load_image(path).rgb[0, :, 0], [0, 255, 128, 100])


def test_cmyk(tmp_path):
    cmyk = Image.fromarray(random_rgb(4, 5)).convert("CMYK")
    path = save(cmyk, tmp_path / "print.tif")
    np.testing.assert_array_equal(load_image(path).rgb, np.asarray(Image.open(path).convert("RGB")))


def test_exif_orientation_six_rotates(tmp_path):
    stored = Image.fromarray(random_rgb(24, 40))  # stored 40 wide, 24 high
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(stored, tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    assert loaded.rgb.shape == (40, 24, 3)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    np.testing.assert_array_equal(loaded.rgb, expected)


def test_animated_gif_and_multipage_tiff_use_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), color) for color in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = load_image(gif)
    assert tuple(loaded.rgb[0, 0]) == (255, 0, 0)
    assert loaded.note == "animated GIF: first of 3 frames used"
    tiff = tmp_path / "pages.tiff"
    frames[1].save(tiff, save_all=True, append_images=[frames[2]])
    loaded = load_image(tiff)
    assert tuple(loaded.rgb[0, 0]) == (0, 255, 0)
    assert loaded.note == "multi-page TIFF: first of 2 pages used"


def test_names_with_spaces_and_non_ascii(tmp_path):
    rgb = random_rgb(3, 3)
    path = save(Image.fromarray(rgb), tmp_path / "mes photos" / "été à Zürich 写真.png")
    np.testing.assert_array_equal(load_image(path).rgb, rgb)
    assert find_images([tmp_path])[0].relative == Path("mes photos", "été à Zürich 写真.png")


# --- load_image: bad files -------------------------------------------------------------------

def test_zero_bytes_text_and_directory(tmp_path):
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(InputImageError, match=r"empty\.png is empty \(0 bytes\)"):
        load_image(empty)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    with pytest.raises(InputImageError, match=r"notes\.jpg is not an image"):
        load_image(text)
    with pytest.raises(InputImageError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(InputImageError, match="not found"):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files_fail_with_one_line(tmp_path, suffix):
    whole = save(Image.fromarray(random_rgb(48, 48)), tmp_path / f"whole{suffix}")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputImageError, match="truncated or corrupt") as error:
        load_image(cut)
    assert "\n" not in str(error.value) and "cut" in str(error.value)


def test_permission_denied(tmp_path, monkeypatch):
    path = save(Image.fromarray(random_rgb(2, 2)), tmp_path / "secret.png")
    if os.geteuid() == 0:  # root reads anything: simulate the refusal instead
        real_open = pathlib.Path.open

        def refusing_open(self, *args, **kwargs):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "open", refusing_open)
    else:
        path.chmod(0)
    with pytest.raises(InputImageError, match=r"cannot read .*secret\.png: permission denied"):
        load_image(path)


def test_bomb_header_refused_before_decoding(tmp_path):
    bomb = png_with_header_size(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(InputImageError, match=r"20000x20000 = 400\.0 MP, above the 100 MP limit \(max_pixels\)$") as caught:
        load_image(bomb)
    assert caught.value.hint == "raise it with --max-pixels"  # what the command line adds
    # with the limit raised, the header passes and decoding the (tiny) data fails instead
    with pytest.raises(InputImageError, match="truncated or corrupt"):
        load_image(bomb, max_pixels=500_000_000)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's global guard is restored


def test_raising_the_limit_lets_a_big_image_through(tmp_path, monkeypatch):
    big = save(Image.new("L", (3000, 2000), 7), tmp_path / "big.png")
    with pytest.raises(InputImageError, match=r"3000x2000 = 6\.0 MP, above the 5 MP limit"):
        load_image(big, max_pixels=5_000_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # segcli's limit governs, not PIL's global
    loaded = load_image(big, max_pixels=6_000_000)
    assert loaded.rgb.shape == (2000, 3000, 3) and loaded.rgb[1999, 2999, 0] == 7
    assert Image.MAX_IMAGE_PIXELS == 1000
