"""Property-based tests: image decoding never fails with anything but InputImageError, and no
combination of `segcli predict` flags ends in a traceback or an exit code other than 0, 1 or 2."""

from __future__ import annotations

import io
import itertools
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from robustness_support import assert_no_traceback, random_rgb, run_predict, save_image, save_tiny_checkpoint
from segcli.errors import InputImageError
from segcli.imageio import load_image

FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK")
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp",
          "PPM": ".ppm"}
ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_names = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


def _image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rgb = Image.fromarray(random_rgb(height, width, seed))
    if mode == "I;16":
        return Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257))
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return rgb.convert(mode)


def _check_loaded(path, width: int, height: int) -> None:
    try:
        loaded = load_image(path, max_pixels=1_000_000)
    except InputImageError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (height, width, 3)
    assert loaded.rgb.flags.c_contiguous


@FAST
@given(mode=st.sampled_from(MODES), image_format=st.sampled_from(FORMATS), width=st.integers(1, 24),
       height=st.integers(1, 24), seed=st.integers(0, 2**16), orientation=st.sampled_from([None, 1, 3, 6, 8]))
def test_any_small_image_loads_as_rgb_of_its_displayed_size(scratch, mode, image_format, width, height, seed,
                                                           orientation):
    image = _image(mode, width, height, seed)
    kwargs = {}
    if orientation is not None and image_format in ("JPEG", "PNG", "TIFF", "WEBP"):
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    stream = io.BytesIO()
    try:
        image.save(stream, format=image_format, **kwargs)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # PIL cannot write this mode in this format (e.g. RGBA as JPEG)
    path = scratch / f"{next(_names)}{SUFFIX[image_format]}"
    path.write_bytes(stream.getvalue())
    swapped = kwargs and orientation in ROTATING_ORIENTATIONS
    loaded = load_image(path)  # a valid file must load (no InputImageError)
    expected_shape = (width, height, 3) if swapped else (height, width, 3)
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == expected_shape
    if mode == "RGB" and image_format in ("PNG", "BMP", "TIFF", "PPM") and orientation in (None, 1):
        np.testing.assert_array_equal(loaded.rgb, np.asarray(image))


def _valid_file(image_format: str) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(random_rgb(20, 28, 7)).save(stream, format=image_format)
    return stream.getvalue()


VALID = {"PNG": _valid_file("PNG"), "JPEG": _valid_file("JPEG")}


@st.composite
def corruptions(draw):
    image_format = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[image_format])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[position:position + draw(st.integers(1, 16))]
    return image_format, bytes(data)


@FAST
@given(case=corruptions())
def test_corrupted_png_and_jpeg_load_or_raise_input_image_error_only(scratch, case):
    image_format, data = case
    path = scratch / f"corrupt{next(_names)}{SUFFIX[image_format]}"
    path.write_bytes(data)
    try:
        loaded = load_image(path, max_pixels=1_000_000)
    except InputImageError as exc:
        assert "\n" not in str(exc)
        return
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3


# --- random combinations of predict flags ----------------------------------------------------

OPTION_VALUES: dict[str, list[str | None]] = {
    "--model": ["lraspp", "fcn8s", "no-such-model"],
    "--alpha": ["0.3", "1.5", "-1", "x"],
    "--tile": ["auto", "off", "32", "16", "abc"],
    "--tile-overlap": ["0.25", "0.95", "y"],
    "--batch-size": ["1", "3", "0", "z"],
    "--io-workers": ["0", "2", "-1"],
    "--max-pixels": ["1", "100000000", "0"],
    "--device": ["cpu", "cuda", "mps", "tpu", "cuda:x"],
    "--precision": ["fp32", "bf16", "fp8"],
    "--crf-iters": ["2", "0"],
}
FLAGS = ["--report", "--no-multiscale", "--overwrite", "--skip-existing", "--tta", "--crf", "--crf-full",
         "--quiet", "--no-download"]
ERROR_LINE = re.compile(r"^(Error: |failed: |Usage: )", re.MULTILINE)


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-properties")
    weights = save_tiny_checkpoint(root / "tiny-lraspp.safetensors")
    image = save_image(Image.fromarray(random_rgb(16, 16, 3)), root / "in" / "photo.png")
    return root, weights, image


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.dictionaries(st.sampled_from(sorted(OPTION_VALUES)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({key: st.sampled_from(OPTION_VALUES[key]) for key in keys})),
    flags=st.lists(st.sampled_from(FLAGS), max_size=3, unique=True))
@pytest.mark.slow
def test_any_flag_combination_exits_0_1_or_2_without_traceback(cli_setup, options, flags):
    root, weights, image = cli_setup
    extra = [item for key, value in options.items() for item in (key, value)] + flags
    out = root / f"out{next(_names)}"
    # run_predict passes --model lraspp --device cpu --precision fp32 first; later flags override them
    result = run_predict([image], out, weights, *extra)
    assert_no_traceback(result)
    assert result.exit_code in (0, 1, 2), (extra, result.exit_code, result.output)
    if result.exit_code != 0:
        assert ERROR_LINE.search(result.stderr), (extra, result.stderr)
    else:
        assert (out / "photo.png").is_file() and (out / "photo.json").is_file()
