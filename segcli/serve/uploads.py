"""What a `POST /v1/segment` asks for: the image (raw body or multipart field `image`, size-limited),
one output kind and the classes it keeps; every problem is a `Refused` with its HTTP status."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Sequence

from segcli.output_names import CLASS_KINDS  # what `classes=` limits, as predict's --classes
from segcli.outputs.classwise import match_classes
from segcli.text import printable

KIND_TYPES = {  # the kinds a request may ask for (`outputs=`) and the media type of each answer
    "label": "image/png", "overlay": "image/png", "cutout": "image/png", "json": "application/json",
    "rle": "application/json", "probs": "application/octet-stream", "masks": "application/zip",
}
# besides image/*; application/x-www-form-urlencoded is what `curl --data-binary @img.jpg` sends by default
RAW_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same masks give the same zip bytes


class Refused(Exception):
    """A request the server answers with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class Ask:
    """A checked request: the output kind and the classes it keeps (None: the kind's default)."""

    kind: str
    classes: tuple[int, ...] | None


def parse_ask(query: dict[str, str], categories: Sequence[str]) -> Ask:
    """`outputs=` (one kind, default label) and `classes=` (names or indices, as predict's --classes)."""
    kinds = [item.strip().lower() for item in query.get("outputs", "label").split(",") if item.strip()]
    if len(kinds) != 1:
        raise Refused(400, f"outputs= takes one kind per request, from {', '.join(KIND_TYPES)}")
    if kinds[0] not in KIND_TYPES:
        raise Refused(400, f"unknown output {printable(kinds[0])!r}: choose from {', '.join(KIND_TYPES)}")
    if "classes" not in query:
        return Ask(kinds[0], None)
    if kinds[0] not in CLASS_KINDS:
        raise Refused(400, f"classes= limits {', '.join(CLASS_KINDS)}: ask for one of them with outputs=")
    items = [item.strip() for item in query["classes"].split(",") if item.strip()]
    if not items:
        raise Refused(400, "classes= is empty: give class names or indices, comma-separated")
    return Ask(kinds[0], class_indices(items, categories))


def class_indices(items: Sequence[str], categories: Sequence[str]) -> tuple[int, ...]:
    """Class indices of `classes=` items, as predict's --classes reads them; 400 naming the unknown ones."""
    indices, unknown = match_classes(items, categories)
    if unknown:
        listing = ", ".join(f"{index} {printable(name)}" for index, name in enumerate(categories))
        raise Refused(400, f"unknown class(es) {', '.join(repr(printable(item)) for item in unknown)} in classes=; "
                           f"the model has: {listing}")
    return indices


def body_limit(max_pixels: int) -> int:
    """The largest request body: an uncompressed RGBA image at the pixel limit, plus 1 MiB for headers and
    multipart framing (larger bodies could only hold images the pixel limit refuses anyway)."""
    return 4 * max_pixels + (1 << 20)


async def read_body(request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"the upload is {int(declared):,} bytes, above the server's limit of {limit:,} bytes "
                           "(raise it with --max-pixels)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the upload is above the server's limit of {limit:,} bytes (raise it with --max-pixels)")
        chunks.append(chunk)
    return b"".join(chunks)


async def image_upload(request, limit: int) -> tuple[bytes, str]:
    """The image's bytes and its name: the raw body (image/*, application/octet-stream, or no type; name from
    `name=`) or the `image` file field of a multipart/form-data body (name from the file name)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data" and media not in RAW_TYPES and not media.startswith("image/"):
        raise Refused(415, f"send the image as the body (image/* or application/octet-stream) or as the field "
                           f"'image' of multipart/form-data, not {printable(media)}")
    body = await read_body(request, limit)
    if media != "multipart/form-data":
        return body, _file_name(request.query_params.get("name"))
    return await _multipart_image(request.headers, body, limit)


async def _multipart_image(headers, body: bytes, limit: int) -> tuple[bytes, str]:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body
        yield b""

    try:
        form = await MultiPartParser(headers, stream(), max_files=1, max_fields=16, max_part_size=limit).parse()
    except MultiPartException as exc:
        raise Refused(400, f"malformed multipart body: {printable(exc.message)}") from None
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise Refused(400, "the multipart body has no file field 'image'")
        return await upload.read(), _file_name(upload.filename)
    finally:
        await form.close()


def _file_name(name: str | None) -> str:
    """The last part of a client's file name (never a path), or "upload"."""
    name = PurePosixPath((name or "").replace("\\", "/")).name
    return name or "upload"


def masks_zip(stem: str, masks: Sequence[tuple[str, bytes]]) -> bytes:
    """`{stem}_mask_{class}.png` entries (stored: PNGs are compressed already), as predict names the files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for label, data in masks:
            archive.writestr(zipfile.ZipInfo(f"{stem}_mask_{label}.png", date_time=ZIP_TIME), data)
    return buffer.getvalue()
