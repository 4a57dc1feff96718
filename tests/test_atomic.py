"""Atomic writes: a reader sees the old file or the new one; a set of files is replaced all together or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import segcli.atomic
from segcli.atomic import (
    TEMPORARY_PATTERN, atomic_write_bytes, atomic_write_json, replace_together, temporary_name, temporary_stem,
    write_temporary,
)
from segcli.errors import OutputError


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_failed_serialisation_leaves_no_partial_or_temp_file(tmp_path):
    target = tmp_path / "out.png"
    atomic_write_bytes(target, b"old contents")

    def half_written(handle):
        handle.write(b"\x89PNG half")
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="encoder crashed"):
        segcli.atomic.atomic_write(target, half_written)
    assert target.read_bytes() == b"old contents" and names(tmp_path) == ["out.png"]
    with pytest.raises(ValueError):  # NaN is not JSON; nothing half-written either
        atomic_write_json(tmp_path / "s.json", {"x": float("nan")})
    assert names(tmp_path) == ["out.png"]


def test_unwritable_folder_gives_output_error(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(segcli.atomic.os, "replace", refuse)  # chmod does not stop root
    with pytest.raises(OutputError, match=r"cannot write .*mask\.png: Permission denied"):
        atomic_write_bytes(folder / "mask.png", b"data")
    assert list(folder.iterdir()) == []


def test_disk_full_becomes_output_error(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segcli.atomic.os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write_json(tmp_path / "s.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_match_the_pattern_and_fit_the_name_limit(tmp_path):
    short = temporary_name(tmp_path / "a.png")
    assert TEMPORARY_PATTERN.match(short.name).group("name") == "a.png"
    long_name = "é" * 120 + "_overlay.png"  # 252 bytes: fits, its temporary would not
    cut = temporary_name(tmp_path / long_name)
    assert len(os.fsencode(cut.name)) <= 255
    assert TEMPORARY_PATTERN.match(cut.name).group("name") == temporary_stem(long_name)
    assert long_name.startswith(temporary_stem(long_name))  # cut at a character boundary
    write_temporary(tmp_path / long_name, lambda handle: handle.write(b"x")).unlink()


def make_set(folder: Path, contents: dict[str, bytes]) -> list[tuple[Path, Path]]:
    return [(write_temporary(folder / name, lambda handle, data=data: handle.write(data)), folder / name)
            for name, data in contents.items()]


def test_replace_together_replaces_the_whole_set(tmp_path):
    replace_together(make_set(tmp_path, {"a.png": b"old label", "a.json": b"old json"}))
    replace_together(make_set(tmp_path, {"a.png": b"new label", "a.json": b"new json"}))
    assert names(tmp_path) == ["a.json", "a.png"]
    assert (tmp_path / "a.png").read_bytes() == b"new label" and (tmp_path / "a.json").read_bytes() == b"new json"


@pytest.mark.parametrize("failing_call", [1, 2, 3, 4])  # renames: mark aside, label aside, label in, mark in
def test_a_rename_that_fails_puts_the_old_set_back(tmp_path, monkeypatch, failing_call):
    replace_together(make_set(tmp_path, {"a.png": b"old label", "a.json": b"old json"}))
    moves = make_set(tmp_path, {"a.png": b"new label", "a.json": b"new json"})
    real_replace, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == failing_call:
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(segcli.atomic.os, "replace", flaky)
    with pytest.raises(OutputError, match="Input/output error"):
        replace_together(moves)
    monkeypatch.undo()
    assert names(tmp_path) == ["a.json", "a.png"]  # no temporary, no backup left
    assert (tmp_path / "a.png").read_bytes() == b"old label" and (tmp_path / "a.json").read_bytes() == b"old json"


def test_ctrl_c_during_the_renames_puts_the_old_set_back(tmp_path, monkeypatch):
    replace_together(make_set(tmp_path, {"a.png": b"old", "a.json": b"old"}))
    moves = make_set(tmp_path, {"a.png": b"new", "a.json": b"new"})
    real_replace, calls = os.replace, []

    def interrupted(src, dst):
        calls.append(dst)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(segcli.atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replace_together(moves)
    monkeypatch.undo()
    assert names(tmp_path) == ["a.json", "a.png"] and (tmp_path / "a.png").read_bytes() == b"old"


def test_replace_false_refuses_a_target_that_appeared(tmp_path):
    moves = make_set(tmp_path, {"a.png": b"new", "a.json": b"new"})
    (tmp_path / "a.png").write_bytes(b"someone else's")
    with pytest.raises(OutputError, match="a.png already exists"):
        replace_together(moves, replace=False)
    assert names(tmp_path) == ["a.png"] and (tmp_path / "a.png").read_bytes() == b"someone else's"
