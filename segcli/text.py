"""Text safe to print: a user's file name never writes raw control characters to a terminal."""

from __future__ import annotations

import os

# undecodable bytes of a file name come back from os.fsdecode as lone surrogates U+DC80..U+DCFF
_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)


def printable(name: str | os.PathLike[str]) -> str:
    """`name` with every non-printable character escaped as Python writes it (\\n, \\x1b, \\u202e).

    A newline cannot forge a second `failed:` line, an escape sequence cannot retitle or clear the
    terminal, a bidi override cannot reorder the line. Printable text, spaces and non-ASCII letters
    stay as they are; undecodable bytes show as \\xNN.
    """
    text = os.fspath(name)
    if text.isprintable():
        return text
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    if code in _SURROGATE_ESCAPES:
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1] if code < 0x10000 else f"\\U{code:08x}"
