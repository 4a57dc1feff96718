"""Load input images as RGB uint8 arrays, safely (finding them is `segcli.inputs`)."""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar

import numpy as np
import PIL
from PIL import Image, ImageOps, UnidentifiedImageError

from segcli.errors import InputImageError

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: a 10000x10000 photo; decompression bombs stay out
ALPHA_BACKGROUND = 255            # transparent pixels are composited on white

# The formats segcli reads (inputs.IMAGE_EXTENSIONS' formats; Pillow's names). Pillow picks a decoder by content, not
# by name, so without this list a PostScript file named photo.jpg would go to Ghostscript.
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
ACCEPTED_TEXT = "JPEG, PNG, BMP, GIF, TIFF, WebP, PPM/PGM"
# An image piped on stdin: the first bytes must look like an accepted format; then at most
# STREAM_BYTES_PER_PIXEL * max_pixels + STREAM_HEADROOM bytes are read (16-bit RGBA, uncompressed, is 8 bytes a
# pixel, the most any accepted format stores; the headroom holds metadata such as EXIF and ICC profiles).
STREAM_HEADER_BYTES = 4096
STREAM_BYTES_PER_PIXEL = 8
STREAM_HEADROOM = 16 * 1024 * 1024
_STREAM_CHUNK = 1024 * 1024
_PIL_LIMIT_LOCK = threading.Lock()
_PIL_FOLDER = os.path.dirname(os.path.abspath(PIL.__file__)) + os.sep
T = TypeVar("T")


@dataclass
class LoadedImage:
    """A decoded image in displayed orientation."""

    rgb: np.ndarray       # H x W x 3 uint8, C-contiguous
    path: Path
    note: str | None = None  # e.g. "animated GIF: first of 12 frames used"


@contextmanager
def _segcli_pixel_limit() -> Iterator[list[warnings.WarningMessage]]:
    """Turn off PIL's global bomb limit while segcli applies its own (checked from the header); Pillow's warnings
    about the file (corrupt EXIF, truncated tags) are collected, for the image's note, not printed."""
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield caught
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    for warning in caught:
        if not _about_the_file(warning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _about_the_file(warning: warnings.WarningMessage) -> bool:
    """A UserWarning from Pillow's own code (its decoders' way to report a damaged part); other threads'
    warnings caught meanwhile (catch_warnings is process-wide) are shown as usual."""
    return type(warning.message) is UserWarning and os.path.abspath(warning.filename).startswith(_PIL_FOLDER)


def _warning_note(caught: list[warnings.WarningMessage]) -> str | None:
    messages = dict.fromkeys(_one_line(warning.message) for warning in caught if _about_the_file(warning))
    return f"decoder warning: {'; '.join(messages)}" if messages else None


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file to an H x W x 3 uint8 RGB array in displayed (EXIF) orientation.

    The pixel limit is checked from the header, before any pixel is decoded (None: no limit).
    Transparent pixels are composited on white; 16-bit images are scaled to 8 bit; the first
    frame of an animated or multi-page file is used (and `note` says so).
    """
    path = Path(path)
    with _open_file(path) as handle:
        return _decode(handle, path, max_pixels)


def load_label_png(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The pixel values of a palettized (P) or grey (L) PNG, H x W uint8: a label mask's class indices.

    Only PNG is decoded (a lossy format would change the labels); failures are InputImageError, as for images.
    """
    path = Path(path)
    with _open_file(path) as handle, _segcli_pixel_limit():
        image = _open_image(handle, path, ("PNG",), "PNG")
        with image:
            _check_pixels(image, path, max_pixels)
            if image.mode not in ("P", "L"):
                raise InputImageError(f"{path} is mode {image.mode}: masks must be palettized (P) or grey (L) "
                                      "PNGs whose values are class indices")
            return _guarded(lambda: np.array(image, dtype=np.uint8), path, _CORRUPT)


def _open_file(path: Path) -> BinaryIO:
    if not path.exists():
        raise InputImageError(f"image not found: {path}")
    if path.is_dir():
        raise InputImageError(f"{path} is a directory, not an image")
    if not path.is_file():
        raise InputImageError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise InputImageError(f"{path} is empty (0 bytes)")
    try:
        return path.open("rb")
    except PermissionError:
        raise InputImageError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise InputImageError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_image_bytes(data: bytes, name: str = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """`load_image` for an encoded image held in memory (`name` appears in messages)."""
    if not data:
        raise InputImageError(f"{name} is empty (0 bytes)")
    return _decode(io.BytesIO(data), Path(name), max_pixels)


def read_image_stream(stream: BinaryIO, name: str = "stdin",
                      max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """`load_image_bytes` for a stream (stdin): its first bytes must start an accepted format, and it is read only
    up to `stream_byte_cap(max_pixels)` bytes, so `yes |` or an endless pipe is refused, not held in memory."""
    header = _read_up_to(stream, STREAM_HEADER_BYTES)
    if not header:
        raise InputImageError(f"{name} is empty (0 bytes)")
    if not _starts_accepted_format(header):
        raise InputImageError(_unsupported(name))
    cap = stream_byte_cap(max_pixels)
    chunks, total = [header], len(header)
    while len(chunks[-1]) and total <= cap:
        chunks.append(_read_up_to(stream, min(_STREAM_CHUNK, cap + 1 - total)))
        total += len(chunks[-1])
    if total > cap:
        limit = max_pixels or DEFAULT_MAX_PIXELS
        raise InputImageError(
            f"{name} is over {cap:,} bytes, the most an image within the limit of {limit:,} pixels (max_pixels) "
            f"can take ({STREAM_BYTES_PER_PIXEL} bytes a pixel + {STREAM_HEADROOM // 2**20} MiB)",
            hint="raise --max-pixels, or pass the file's path")
    return load_image_bytes(b"".join(chunks), name, max_pixels)


def stream_byte_cap(max_pixels: int | None) -> int:
    """The most bytes `read_image_stream` reads for an image within `max_pixels` (None: segcli's default)."""
    return (max_pixels or DEFAULT_MAX_PIXELS) * STREAM_BYTES_PER_PIXEL + STREAM_HEADROOM


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """`size` bytes, fewer only at the end of the stream (a pipe hands over what it has)."""
    parts, missing = [], size
    while missing > 0:
        part = stream.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def _starts_accepted_format(header: bytes) -> bool:
    return _format_of(header, _registered_formats()) is not None


def _format_of(header: bytes, formats: tuple[str, ...]) -> str | None:
    """The first of `formats` whose Pillow plugin recognises `header` (the plugin's own `accept` test)."""
    for image_format in formats:
        _, accept = Image.OPEN[image_format]
        if accept is None or accept(header) is True:
            return image_format
    return None


def _open_image(handle: BinaryIO, path: Path, formats: tuple[str, ...], formats_text: str = ACCEPTED_TEXT):
    """Image.open limited to `formats`; a file that starts as one of them but cannot be opened is named damaged."""
    def open_or_explain() -> Image.Image:
        try:
            return Image.open(handle, formats=formats)
        except UnidentifiedImageError:
            handle.seek(0)
            claimed = _format_of(handle.read(16), formats)  # the prefix Pillow's `accept` tests look at
            if claimed is None:
                raise InputImageError(_unsupported(path, formats_text)) from None
            raise InputImageError(f"{path}: cannot read image header, the {claimed} file is damaged") from None

    return _guarded(open_or_explain, path, "cannot read image header")


def _registered_formats() -> tuple[str, ...]:
    """ACCEPTED_FORMATS that this Pillow has a plugin for (a build without WebP lacks one)."""
    Image.init()
    return tuple(image_format for image_format in ACCEPTED_FORMATS if image_format in Image.OPEN)


def _decode(handle: BinaryIO, path: Path, max_pixels: int | None) -> LoadedImage:
    with _segcli_pixel_limit() as caught:
        image = _open_image(handle, path, _registered_formats())
        with image:
            _check_pixels(image, path, max_pixels)
            note = _guarded(lambda: _load_first_frame(image), path, _CORRUPT)
            image, orientation_note = _guarded(lambda: _displayed_orientation(image), path, _CORRUPT)
            rgb = _guarded(lambda: _to_rgb_array(image, path), path, _CORRUPT)
    notes = [n for n in (note, orientation_note, _warning_note(caught)) if n]
    return LoadedImage(rgb=rgb, path=path, note="; ".join(notes) or None)


_CORRUPT = "cannot decode image, the file is truncated or corrupt"


def _guarded(step: Callable[[], T], path: Path, what: str) -> T:
    """Run a Pillow step; whatever its decoders raise for a bad file becomes one InputImageError line.

    Pillow's plugins raise many types for damaged data (OSError, SyntaxError, TypeError, struct.error,
    NotImplementedError, ...), so all Exceptions are taken but MemoryError, which is the machine's problem,
    not the file's; KeyboardInterrupt and SystemExit are not Exceptions and pass as they are.
    """
    try:
        return step()
    except (InputImageError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 (see the docstring)
        raise InputImageError(f"{path}: {what} ({_one_line(exc)})") from None


def _unsupported(path: Path | str, formats: str = ACCEPTED_TEXT) -> str:
    return f"{path} is not an image segcli can read: not a supported format (segcli reads {formats})"


def _check_pixels(image: Image.Image, path: Path, max_pixels: int | None) -> None:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise InputImageError(
            f"{path} is {width}x{height} = {_pixels_text(width * height, '.1f')}, above the "
            f"{_pixels_text(max_pixels, 'g')} limit (max_pixels)", hint="raise it with --max-pixels"
        )


def _load_first_frame(image: Image.Image) -> str | None:
    note = _first_frame_note(image)
    image.load()  # full decode: a truncated file fails here, not later
    return note


def _pixels_text(count: int, megapixel_format: str) -> str:
    """'6.0 MP' for photo sizes, '2,304 pixels' below 0.1 MP (where '0.0 MP' would say nothing)."""
    return f"{count / 1e6:{megapixel_format}} MP" if count >= 100_000 else f"{count:,} pixels"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _first_frame_note(image: Image.Image) -> str | None:
    frames = getattr(image, "n_frames", 1)
    if frames <= 1:
        return None
    image.seek(0)
    kind = "multi-page TIFF" if image.format == "TIFF" else f"animated {image.format or 'image'}"
    unit = "pages" if image.format == "TIFF" else "frames"
    return f"{kind}: first of {frames} {unit} used"


def _displayed_orientation(image: Image.Image) -> tuple[Image.Image, str | None]:
    """Apply the EXIF orientation so masks line up with what viewers show."""
    try:
        transposed = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, struct.error, KeyError, TypeError) as exc:
        return image, f"EXIF orientation unreadable ({_one_line(exc)}); image used as stored"
    return (image if transposed is None else transposed), None


def _to_rgb_array(image: Image.Image, path: Path) -> np.ndarray:
    """Any PIL mode -> H x W x 3 uint8 (16-bit scaled, alpha composited on white)."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey (PNG/TIFF): map 0..65535 linearly onto 0..255, rounding to nearest
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0  # float images in [0, 1]
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    try:
        converted = image.convert("RGBA" if has_alpha else "RGB")
    except ValueError as exc:
        raise InputImageError(
            f"{path}: colour mode {mode} is not supported ({_one_line(exc)}); save it as RGB"
        ) from None
    array = np.array(converted)  # a writable copy (np.asarray of a PIL image is read-only)
    if has_alpha:
        alpha = array[:, :, 3:4].astype(np.uint32)
        blended = (array[:, :, :3].astype(np.uint32) * alpha + ALPHA_BACKGROUND * (255 - alpha) + 127) // 255
        array = blended.astype(np.uint8)
    return np.ascontiguousarray(array, dtype=np.uint8)


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image -> H x W x 3 uint8 in displayed (EXIF) orientation, as `load_image` converts files."""
    image, _ = _displayed_orientation(image)
    return _to_rgb_array(image, Path("<PIL image>"))


def as_rgb(image: "np.ndarray | str | Path | Image.Image", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An HxWx3 uint8 RGB array from an array (as it is), a PIL image, or an image file (`load_image`)."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, (str, PathLike)):
        return load_image(image, max_pixels=max_pixels).rgb
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    raise InputImageError(f"expected an RGB array, a PIL image or an image file path, not {type(image).__name__}")
