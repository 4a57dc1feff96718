"""`segcli predict` never destroys what a user owns, and no single file or folder stops a run.

The output plan's safety rules, through the CLI with the tiny model on the CPU.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

import segcli.atomic
from robustness_support import (
    assert_no_traceback, files_under, lines_naming, output_set, random_rgb, run_predict, save_image,
    save_tiny_checkpoint, segcli_subprocess,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


def photo(path: Path, seed: int = 0, size: int = 24) -> Path:
    return save_image(Image.fromarray(random_rgb(size, size, seed)), path)


def contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in files_under(folder)}


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# --- 1: in place, outputs never replace an input -------------------------------------------------

@pytest.mark.parametrize("flag", [None, "--overwrite", "--skip-existing"])
def test_in_place_run_never_replaces_an_input_png(tmp_path, weights, flag):
    folder = tmp_path / "photos"
    photo(folder / "dog.png", 1)
    photo(folder / "cat.jpg", 2)
    before = contents(folder)
    result = run_predict([folder], folder, weights, *([flag] if flag else []))
    assert_no_traceback(result)
    assert result.exit_code == 1
    error = last_line(result.stderr)
    assert error.startswith("Error: ") and "dog.png" in error and "is an input of this run" in error
    assert "--overwrite" not in error and "--skip-existing" not in error
    assert "--out" in error  # says what to do instead
    assert contents(folder) == before  # nothing written, the input untouched


def test_in_place_jpeg_folder_reruns_without_ingesting_its_own_outputs(tmp_path, weights):
    folder = tmp_path / "photos"
    photo(folder / "cat.jpg", 2)
    first = run_predict([folder], folder, weights)
    assert first.exit_code == 0, first.stderr
    assert output_set("cat") <= files_under(folder)
    again = run_predict([folder], folder, weights, "--overwrite")
    assert again.exit_code == 0, again.stderr
    assert last_line(again.stderr).startswith("1 segmented")
    assert files_under(folder) == {"cat.jpg"} | output_set("cat")


# --- 2: full output names never collide --------------------------------------------------------------

def test_output_name_collision_across_inputs_is_refused_before_any_work(tmp_path, weights):
    folder = tmp_path / "in"
    photo(folder / "cat.jpg", 1)
    photo(folder / "cat_overlay.jpg", 2)
    out = tmp_path / "out"
    result = run_predict([folder], out, weights, "--overwrite")
    assert_no_traceback(result)
    assert result.exit_code == 1
    error = last_line(result.stderr)
    assert error.startswith("Error: ") and "cat.jpg" in error and "cat_overlay.jpg" in error
    assert "cat_overlay.png" in error
    assert files_under(out) == set()
    # without overlays the two sets do not meet
    assert run_predict([folder], out, weights, "--outputs", "label,json").exit_code == 0


# --- 3: earlier outputs are not inputs -------------------------------------------------------------

def test_out_folder_inside_the_input_folder_is_not_reingested(tmp_path, weights):
    folder = tmp_path / "photos"
    photo(folder / "a.jpg", 1)
    out = folder / "segcli-out"
    assert run_predict([folder], out, weights).exit_code == 0
    again = run_predict([folder], out, weights, "--overwrite")
    assert again.exit_code == 0, again.stderr
    assert last_line(again.stderr).startswith("1 segmented")
    assert files_under(out) == output_set("a")
    elsewhere = tmp_path / "elsewhere"
    third = run_predict([folder], elsewhere, weights)  # an earlier output folder, not this run's --out
    assert third.exit_code == 0, third.stderr
    assert files_under(elsewhere) == output_set("a")


# --- 4: a set is replaced whole or not at all --------------------------------------------------------

class _FillsUp:
    def __init__(self, handle, room: int) -> None:
        self._handle, self._room = handle, room

    def write(self, data) -> int:
        if len(data) > self._room:
            self._handle.write(bytes(data[: self._room]))
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.close()


class _OsWith:
    def __init__(self, **replacements) -> None:
        self._replacements = replacements

    def __getattr__(self, name: str):
        return self._replacements.get(name) or getattr(os, name)


def test_overwrite_on_a_full_disk_keeps_the_old_set_complete(tmp_path, weights, monkeypatch):
    folder = tmp_path / "in"
    for index, stem in enumerate("abc"):
        photo(folder / f"{stem}.png", index)
    out = tmp_path / "out"
    assert run_predict([folder], out, weights).exit_code == 0
    old = contents(out)
    photo(folder / "b.png", 99)  # b changes, so its new set would differ

    def filling_fdopen(fd, *args, **kwargs):
        handle = os.fdopen(fd, *args, **kwargs)
        target = os.readlink(f"/proc/self/fd/{fd}")
        return _FillsUp(handle, room=100) if "b_overlay.png" in target else handle

    monkeypatch.setattr(segcli.atomic, "os", _OsWith(fdopen=filling_fdopen))
    result = run_predict([folder], out, weights, "--overwrite")
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert len(lines_naming(result.stderr, "No space left on device")) == 1
    now = contents(out)
    assert set(now) == set(old)  # no orphan, no temporary file
    assert {name: now[name] for name in output_set("b")} == {name: old[name] for name in output_set("b")}


# --- 5: SIGTERM, stale temporaries, incomplete sets ----------------------------------------------

@pytest.mark.slow  # a child process loads torch: ~10 s on 2 busy cores
def test_sigterm_stops_like_ctrl_c_with_exit_143(tmp_path, weights):
    folder = tmp_path / "in"
    for index in range(30):
        photo(folder / f"{index:02d}.png", index, size=32)
    out = tmp_path / "out"
    child = segcli_subprocess(["predict", str(folder), "--model", "lraspp", "--weights", str(weights),
                               "--out", str(out), "--device", "cpu", "--precision", "fp32"], env={"COLUMNS": "1000"})
    deadline = time.monotonic() + 240
    while not list(out.glob("*.json")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, f"finished before the signal: {child.communicate()}"
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=240)
    assert child.returncode == 143, stderr
    assert last_line(stderr).startswith("Terminated: ") and "Traceback" not in stderr
    assert "stopping after the images in hand (press Ctrl-C again to stop at once)" in stderr
    done = int(last_line(stderr).split()[1])
    stems = {Path(name).stem for name in files_under(out) if name.endswith(".json")}
    assert len(stems) == done >= 1
    assert files_under(out) == set().union(*(output_set(stem) for stem in stems))


def test_stale_temporaries_of_segcli_are_removed_and_nothing_else(tmp_path, weights):
    folder = tmp_path / "in"
    photo(folder / "a.png", 1)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [".a.png.0123abcd.tmp", ".a_overlay.png.deadbeef.tmp", ".a.json.00000000.tmp"]
    kept = [".a.png.tmp", ".notes.txt.0123abcd.tmp", "a.png.0123abcd.tmp", ".a.png.0123ABCD.tmp",
            "sub/.x.png.12345678.tmp"]
    for name in stale + kept:
        (out / name).write_bytes(b"left by someone")
    result = run_predict([folder], out, weights)
    assert result.exit_code == 0, result.stderr
    assert files_under(out) == output_set("a") | set(kept)


def test_label_without_json_is_completed_by_a_rerun(tmp_path, weights):
    folder = tmp_path / "in"
    photo(folder / "a.png", 1)
    photo(folder / "b.png", 2)
    out = tmp_path / "out"
    assert run_predict([folder], out, weights).exit_code == 0
    (out / "b.json").unlink()  # as kill -9 between the label and the JSON leaves it
    (out / "b_overlay.png").unlink()
    result = run_predict([folder], out, weights, "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert last_line(result.stderr).startswith("1 segmented, 1 skipped")
    assert files_under(out) == output_set("a") | output_set("b")


# --- 7: unreadable folders and output paths ------------------------------------------------------

def test_unreadable_sub_folder_fails_alone(tmp_path, weights, monkeypatch):
    folder = tmp_path / "in"
    photo(folder / "good.png", 1)
    photo(folder / "locked" / "hidden.png", 2)
    real_scandir = os.scandir

    def refusing_scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing_scandir)
    out = tmp_path / "out"
    result = run_predict([folder], out, weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    line, = lines_naming(result.stderr, "locked")
    assert line.startswith("failed: ") and "cannot read folder" in line and "Permission denied" in line
    assert last_line(result.stderr).startswith("1 segmented, 1 failed")
    assert output_set("good") <= files_under(out)


def test_output_name_too_long_fails_that_image_alone(tmp_path, weights):
    folder = tmp_path / "in"
    long_stem = "x" * 248  # x...x.png fits in 255 bytes; x...x_overlay.png does not
    photo(folder / f"{long_stem}.png", 1)
    photo(folder / "short.png", 2)
    out = tmp_path / "out"
    result = run_predict([folder], out, weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    line, = lines_naming(result.stderr, long_stem)
    assert line.startswith("failed: ") and "File name too long" in line
    assert last_line(result.stderr).startswith("1 segmented, 1 failed")
    assert files_under(out) == output_set("short")


def test_output_folder_name_too_long_is_one_error_up_front(tmp_path, weights):
    photo(tmp_path / "a.png", 1)
    result = run_predict([tmp_path / "a.png"], tmp_path / ("o" * 300), weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert last_line(result.stderr).startswith("Error: ") and "File name too long" in result.stderr


def test_output_path_that_cannot_be_checked_fails_that_image(tmp_path, weights, monkeypatch):
    folder = tmp_path / "in"
    photo(folder / "open" / "a.png", 1)
    photo(folder / "shut" / "b.png", 2)
    out = tmp_path / "out"
    real_stat, real_lstat = os.stat, os.lstat

    def guard(real):
        def checked(path, *args, **kwargs):
            if str(out / "shut") in os.fspath(path) and os.fspath(path) != str(out / "shut"):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real(path, *args, **kwargs)
        return checked

    monkeypatch.setattr(os, "stat", guard(real_stat))
    monkeypatch.setattr(os, "lstat", guard(real_lstat))
    result = run_predict([folder], out, weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    line, = lines_naming(result.stderr, "shut")
    assert line.startswith("failed: ") and "Permission denied" in line
    assert output_set("open/a") <= files_under(out)


# --- 8: broken and looping links are named -----------------------------------------------------------

def test_broken_and_looping_links_are_named(tmp_path, weights):
    folder = tmp_path / "in"
    photo(folder / "good.png", 1)
    os.symlink(folder / "gone.jpg", folder / "broken.jpg")
    os.symlink(folder / "self.jpg", folder / "self.jpg")
    (folder / "deeper").mkdir()
    os.symlink(folder, folder / "deeper" / "back", target_is_directory=True)
    result = run_predict([folder], tmp_path / "out", weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    broken, = lines_naming(result.stderr, "broken.jpg")
    assert broken.startswith("failed: ") and "broken symbolic link" in broken
    looping, = lines_naming(result.stderr, "self.jpg")
    assert looping.startswith("failed: ") and "loop" in looping
    back, = lines_naming(result.stderr, "back")
    assert back.startswith("skipped: ") and "loop" in back
    assert last_line(result.stderr).startswith("1 segmented, 2 failed")


# --- 13: names are printed escaped ------------------------------------------------------------------

def test_names_with_newlines_and_escape_sequences_are_escaped(tmp_path, weights):
    folder = tmp_path / "in"
    photo(folder / "good.png", 1)
    (folder / "evil\nfailed: forged.png").write_bytes(b"")
    (folder / "title\x1b]0;pwned\x07.png").write_bytes(b"")
    result = run_predict([folder], tmp_path / "out", weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("failed: forged")]
    assert len(lines_naming(result.stderr, "evil\\nfailed: forged.png is empty")) == 1
    assert len(lines_naming(result.stderr, "title\\x1b]0;pwned\\x07.png is empty")) == 1


def test_missing_input_with_escape_sequence_is_escaped_in_the_error(tmp_path, weights):
    result = run_predict([tmp_path / "gone\x1b[2J.png"], tmp_path / "out", weights)
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "gone\\x1b[2J.png" in result.stderr


# --- a rerun fails once, up front ----------------------------------------------------

def test_rerun_into_existing_outputs_fails_once_before_the_model_loads(tmp_path, weights):
    folder = tmp_path / "in"
    for index, stem in enumerate("abc"):
        photo(folder / f"{stem}.png", index)
    out = tmp_path / "out"
    assert run_predict([folder], out, weights).exit_code == 0
    before = contents(out)
    missing_weights = tmp_path / "no-such-checkpoint.safetensors"  # proves the model is never loaded
    result = run_predict([folder], out, missing_weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert "failed:" not in result.stderr
    error, = [line for line in result.stderr.splitlines() if line.strip()]
    assert error.startswith("Error: ") and "3 of 3 images" in error
    assert "--overwrite" in error and "--skip-existing" in error
    assert contents(out) == before


def test_json_summary_keeps_the_real_name(tmp_path, weights):
    """The JSON keeps the real name (it is data, not a terminal line)."""
    folder = tmp_path / "in"
    photo(folder / "tab\there.png", 1)
    out = tmp_path / "out"
    assert run_predict([folder], out, weights).exit_code == 0
    summary = json.loads((out / "tab\there.json").read_text(encoding="utf-8"))
    assert summary["image"].endswith("tab\there.png")
