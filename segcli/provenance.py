"""The mark that says segcli wrote a PNG: a `tEXt` chunk with the keyword `segcli` right after the header.

Input discovery (inputs.py) reads the first bytes of a PNG to tell segcli's own outputs from a user's
photos; outputs/png.py writes the mark (PNG chunk layout: https://www.w3.org/TR/png/#5Chunk-layout).
"""

from __future__ import annotations

import struct
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROVENANCE_KEYWORD = b"segcli"
HEADER_BYTES = 256          # enough for the signature, IHDR and a provenance chunk


def provenance_of(header: bytes) -> str | None:
    """The text of the `segcli` chunk when `header` (a PNG's first bytes) has one right after IHDR."""
    ihdr_end = len(SIGNATURE) + 8 + 13 + 4
    if not header.startswith(SIGNATURE) or len(header) < ihdr_end + 8:
        return None
    length, kind = struct.unpack(">I4s", header[ihdr_end:ihdr_end + 8])
    data = header[ihdr_end + 8:ihdr_end + 8 + length]
    if kind != b"tEXt" or len(data) != length or not data.startswith(PROVENANCE_KEYWORD + b"\0"):
        return None
    return data[len(PROVENANCE_KEYWORD) + 1:].decode("latin-1")


def written_by_segcli(path: str | Path) -> bool:
    """True when the file is a PNG that segcli wrote (its provenance chunk); False when unreadable."""
    try:
        with open(path, "rb") as handle:
            return provenance_of(handle.read(HEADER_BYTES)) is not None
    except OSError:
        return False
