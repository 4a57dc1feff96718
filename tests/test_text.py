"""printable(): names reach the terminal with their control characters escaped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from segcli.text import printable


@pytest.mark.parametrize("name, shown", [
    ("plain name.jpg", "plain name.jpg"),
    ("été à Zürich 写真.png", "été à Zürich 写真.png"),
    ("odd[bold]name.png", "odd[bold]name.png"),
    ("evil\nfailed: forged.png", "evil\\nfailed: forged.png"),
    ("tab\there\r.png", "tab\\there\\r.png"),
    ("title\x1b]0;pwned\x07.png", "title\\x1b]0;pwned\\x07.png"),
    ("del\x7f.png", "del\\x7f.png"),
    ("c1\x9b31m.png", "c1\\x9b31m.png"),
    ("bidi\u202egnp.exe", "bidi\\u202egnp.exe"),
    ("line\u2028sep.png", "line\\u2028sep.png"),
])
def test_printable_escapes_exactly_the_control_characters(name, shown):
    assert printable(name) == shown
    assert printable(Path(name)) == shown
    assert all(char.isprintable() for char in printable(name))


def test_undecodable_bytes_show_as_hex():
    name = os.fsdecode(b"photo\xff\xfe.jpg")
    assert printable(name) == "photo\\xff\\xfe.jpg"
