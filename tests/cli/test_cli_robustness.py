"""`segcli predict` end to end over broken inputs and hostile output conditions (tiny model, CPU).

Each bad file must be named on one stderr line, the run must go on and end non-zero, every good
file must get complete outputs, and nothing partial or temporary may be left under --out.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segcli.atomic
from segcli.outputs.kinds import KINDS
from robustness_support import (
    assert_no_traceback, encoded, files_under, lines_naming, output_set, png_with_header_size, random_rgb,
    run_predict, save_image, save_tiny_checkpoint, segcli_subprocess,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


# --- a folder that mixes good images with every bad case -------------------------------------

# stem -> (label PNG size (width, height) in displayed orientation, expected JSON note or None)
GOOD: dict[str, tuple[tuple[int, int], str | None]] = {
    "plain rgb": ((40, 32), None),
    "été_写真": ((36, 28), None),
    "one_pixel": ((1, 1), None),
    "thin_row": ((37, 1), None),
    "thin_column": ((1, 29), None),
    "grey": ((30, 20), None),
    "palette": ((24, 24), None),
    "rgba": ((20, 30), None),
    "sixteen_bit": ((26, 18), None),
    "cmyk": ((22, 22), None),
    "phone_exif6": ((24, 40), None),        # stored 40 x 24, EXIF orientation 6 (rotate 90 degrees)
    "animated": ((20, 16), "animated GIF: first of 3 frames used"),
    "pages": ((18, 14), "multi-page TIFF: first of 2 pages used"),
}
BAD = {  # file name -> what its error line must say
    "zero.png": "empty (0 bytes)",
    "notes.jpg": "not an image",
    "truncated_jpeg.jpg": "truncated or corrupt",
    "truncated_png.png": "truncated or corrupt",
    "bomb.png": "raise it with --max-pixels",
    "denied.png": "permission denied",
}


def make_mixed_folder(root: Path) -> Path:
    folder = root / "photos"
    folder.mkdir()
    save_image(Image.fromarray(random_rgb(32, 40, 1)), folder / "plain rgb.png")
    save_image(Image.fromarray(random_rgb(28, 36, 2)), folder / "été_写真.jpg", quality=90)
    save_image(Image.fromarray(random_rgb(1, 1, 3)), folder / "one_pixel.png")
    save_image(Image.fromarray(random_rgb(1, 37, 4)), folder / "thin_row.png")
    save_image(Image.fromarray(random_rgb(29, 1, 5)), folder / "thin_column.bmp")
    save_image(Image.fromarray(random_rgb(20, 30, 6)).convert("L"), folder / "grey.png")
    save_image(Image.fromarray(random_rgb(24, 24, 7)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
               folder / "palette.png")
    rgba = Image.fromarray(random_rgb(30, 20, 8)).convert("RGBA")
    rgba.putalpha(128)
    save_image(rgba, folder / "rgba.png")
    sixteen = Image.fromarray((random_rgb(18, 26, 9)[:, :, 0].astype("uint16") * 257))
    save_image(sixteen, folder / "sixteen_bit.png")
    save_image(Image.fromarray(random_rgb(22, 22, 10)).convert("CMYK"), folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    save_image(Image.fromarray(random_rgb(24, 40, 11)), folder / "phone_exif6.jpg", exif=exif.tobytes())
    frames = [Image.new("RGB", (20, 16), color) for color in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    pages = [Image.new("RGB", (18, 14), color) for color in [(10, 20, 30), (200, 100, 0)]]
    pages[0].save(folder / "pages.tif", save_all=True, append_images=pages[1:])

    (folder / "zero.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("shopping list: milk, eggs\n")
    jpeg = encoded(Image.fromarray(random_rgb(48, 48, 12)), "JPEG", quality=90)
    (folder / "truncated_jpeg.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = encoded(Image.fromarray(random_rgb(48, 48, 13)), "PNG")
    (folder / "truncated_png.png").write_bytes(png[: len(png) // 2])
    png_with_header_size(folder / "bomb.png", 12_000, 10_000)  # 120 MP claimed, above the 100 MP default
    save_image(Image.fromarray(random_rgb(16, 16, 14)), folder / "denied.png")
    # a directory loop: photos/loop/back -> photos
    (folder / "loop").mkdir()
    os.symlink(folder, folder / "loop" / "back", target_is_directory=True)
    return folder


@pytest.fixture
def deny_reading(monkeypatch):
    """Opening 'denied.png' fails with EACCES (chmod does not stop root, and the tests run as root)."""
    real_open = pathlib.Path.open

    def guarded_open(self, *args, **kwargs):
        if self.name == "denied.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", guarded_open)


def test_mixed_folder_good_files_written_bad_files_named_once(tmp_path, weights, deny_reading):
    folder = make_mixed_folder(tmp_path)
    out = tmp_path / "out"
    result = run_predict([folder], out, weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    for name, reason in BAD.items():
        lines = lines_naming(result.stderr, name)
        assert len(lines) == 1, f"{name}: expected one stderr line, got {lines!r}\n{result.stderr}"
        assert reason in lines[0]
    summary_line = result.stderr.strip().splitlines()[-1]
    assert summary_line.startswith(f"{len(GOOD)} segmented, {len(BAD)} failed")
    expected_files = set().union(*(output_set(stem) for stem in GOOD))
    assert files_under(out) == expected_files  # no temp files, nothing for bad inputs, nothing via the loop
    loop, = lines_naming(result.stderr, "loop/back")
    assert loop == f"skipped: {folder / 'loop' / 'back'}: a link back to {folder} (a loop)"
    for stem, (size, note) in GOOD.items():
        with Image.open(out / f"{stem}.png") as label:
            assert (label.mode, label.size) == ("P", size), stem
            assert int(np.asarray(label).max()) < 3
        summary = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert summary["size"] == list(size) and summary["note"] == note


def test_pixel_limit_refuses_then_max_pixels_lets_it_through(tmp_path, weights):
    image = save_image(Image.fromarray(random_rgb(48, 48, 20)), tmp_path / "big.png")
    refused = run_predict([image], tmp_path / "out", weights, "--max-pixels", "2000")
    assert refused.exit_code == 1
    lines = lines_naming(refused.stderr, "big.png")
    assert len(lines) == 1 and "is 48x48 = 2,304 pixels, above the 2,000 pixels limit (max_pixels); raise it with --max-pixels" in lines[0]
    assert files_under(tmp_path / "out") == set()
    accepted = run_predict([image], tmp_path / "out", weights, "--max-pixels", "2304")
    assert accepted.exit_code == 0, accepted.output
    assert files_under(tmp_path / "out") == output_set("big")


def test_long_failure_line_is_not_wrapped(tmp_path, weights):
    folder = tmp_path / "a_folder_with_a_rather_long_name_as_photo_archives_have"
    folder.mkdir()
    save_image(Image.fromarray(random_rgb(16, 16, 30)), folder / "good.png")
    (folder / "zero_bytes_file_with_a_long_name.png").write_bytes(b"")
    result = run_predict([folder], tmp_path / "out", weights, env={"COLUMNS": "80"})
    assert result.exit_code == 1
    lines = lines_naming(result.stderr, "zero_bytes_file_with_a_long_name.png")
    assert len(lines) == 1 and lines[0].rstrip().endswith("is empty (0 bytes)"), result.stderr


# --- outputs: not writable, disk full, resume, existing files, Ctrl-C -------------------------

def small_folder(root: Path, count: int = 3, size: int = 24) -> Path:
    folder = root / "in"
    folder.mkdir()
    for index in range(count):
        save_image(Image.fromarray(random_rgb(size, size, 100 + index)), folder / f"{chr(ord('a') + index)}.png")
    return folder


class _OsWith:
    """`os` as segcli.outputs sees it, with some functions replaced (other modules keep the real one)."""

    def __init__(self, **replacements) -> None:
        self._replacements = replacements

    def __getattr__(self, name: str):
        return self._replacements.get(name) or getattr(os, name)


def test_out_folder_not_writable_fails_each_image_with_one_line_and_writes_nothing(tmp_path, weights, monkeypatch):
    folder = small_folder(tmp_path)
    out = tmp_path / "locked"
    out.mkdir()

    def refusing_open(path, flags, mode=0o777, **kwargs):
        if str(path).startswith(str(out)):  # chmod 0o500 does not stop root, so refuse as the kernel would
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return os.open(path, flags, mode, **kwargs)

    monkeypatch.setattr(segcli.atomic, "os", _OsWith(open=refusing_open))
    result = run_predict([folder], out, weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    for stem in "abc":
        lines = lines_naming(result.stderr, f"{stem}.png")
        assert len(lines) == 1 and f"cannot write {out / stem}.png: Permission denied" in lines[0]
    assert files_under(out) == set()


class _FillsUp:
    """A file whose writes stop with ENOSPC once `room` bytes have gone in (some data really written)."""

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


def test_disk_full_mid_write_leaves_no_partial_file_or_incomplete_set(tmp_path, weights, monkeypatch):
    folder = small_folder(tmp_path)
    out = tmp_path / "out"

    def filling_fdopen(fd, *args, **kwargs):
        handle = os.fdopen(fd, *args, **kwargs)
        target = os.readlink(f"/proc/self/fd/{fd}")
        return _FillsUp(handle, room=100) if "b_overlay.png" in target else handle

    monkeypatch.setattr(segcli.atomic, "os", _OsWith(fdopen=filling_fdopen))
    result = run_predict([folder], out, weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    lines = lines_naming(result.stderr, "b_overlay.png")
    assert len(lines) == 1 and f"cannot write {out / 'b_overlay.png'}: No space left on device" in lines[0]
    # b's label PNG was written before its overlay failed: removed again, so no set is incomplete
    assert files_under(out) == output_set("a") | output_set("c")
    assert result.stderr.strip().splitlines()[-1].startswith("2 segmented, 1 failed")


def _mtimes(folder: Path) -> dict[str, int]:
    return {name: (folder / name).stat().st_mtime_ns for name in files_under(folder)}


def test_skip_existing_resumes_and_recreates_a_deleted_set(tmp_path, weights):
    folder = small_folder(tmp_path)
    out = tmp_path / "out"
    assert run_predict([folder], out, weights).exit_code == 0
    before = _mtimes(out)
    assert set(before) == output_set("a") | output_set("b") | output_set("c")
    again = run_predict([folder], out, weights, "--skip-existing")
    assert again.exit_code == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith("0 segmented, 3 skipped (outputs exist)")
    assert _mtimes(out) == before  # nothing rewritten
    for name in output_set("b"):
        (out / name).unlink()
    resumed = run_predict([folder], out, weights, "--skip-existing")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stderr.strip().splitlines()[-1].startswith("1 segmented, 2 skipped")
    after = _mtimes(out)
    assert set(after) == set(before)
    assert {name for name in after if after[name] != before[name]} == output_set("b")


def test_skip_existing_completes_a_set_missing_one_file(tmp_path, weights):
    folder = small_folder(tmp_path, count=2)
    out = tmp_path / "out"
    assert run_predict([folder], out, weights).exit_code == 0
    (out / "a_overlay.png").unlink()
    resumed = run_predict([folder], out, weights, "--skip-existing")
    assert resumed.exit_code == 0, resumed.stderr
    assert files_under(out) == output_set("a") | output_set("b")


def test_existing_outputs_are_kept_without_overwrite_and_the_error_names_file_and_flags(tmp_path, weights):
    folder = small_folder(tmp_path, count=2)
    out = tmp_path / "out"
    assert run_predict([folder], out, weights).exit_code == 0
    (out / "a.png").write_bytes(b"the user's own edited mask")
    before = _mtimes(out)
    result = run_predict([folder], out, weights)
    assert result.exit_code == 1
    line, = [line for line in result.stderr.splitlines() if line.strip()]  # once, before any image
    assert line == (f"Error: {out} already holds the outputs of 1 of 2 images (e.g. {out / 'b.png'}): neither "
                    "overwrite nor skip_existing is set; pass --overwrite to replace them, or --skip-existing to keep "
                    "them and segment the rest")
    assert _mtimes(out) == before and (out / "a.png").read_bytes() == b"the user's own edited mask"
    replaced = run_predict([folder], out, weights, "--overwrite")
    assert replaced.exit_code == 1  # b replaced; a.png is not segcli's any more: kept, and said so
    line, = lines_naming(replaced.stderr, "a.png")
    assert line == (f"failed: {out / 'a.png'} exists and was not written by segcli: not replaced; "
                    "move it or choose another --out")
    assert (out / "a.png").read_bytes() == b"the user's own edited mask"
    with Image.open(out / "b.png") as label:
        assert (label.mode, label.size) == ("P", (24, 24))
    assert _mtimes(out)["b.json"] != before["b.json"]


def test_one_at_a_time_ctrl_c_between_label_and_json_leaves_no_incomplete_set(tmp_path, weights, monkeypatch):
    """KeyboardInterrupt (a second Ctrl-C) lands while image b's JSON is written: b's set is rolled back."""
    folder = small_folder(tmp_path)
    out = tmp_path / "out"
    summary_kind = KINDS["json"]

    def interrupted_json(result, run, handle):
        if result.path.name == "b.png":
            raise KeyboardInterrupt
        summary_kind.write(result, run, handle)

    monkeypatch.setitem(KINDS, "json", dataclasses.replace(summary_kind, write=interrupted_json))
    result = run_predict([folder], out, weights, "--io-workers", "0", "--batch-size", "1")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1].startswith("Interrupted: 1 segmented")
    assert files_under(out) == output_set("a")


@pytest.mark.slow
def test_sigint_stops_between_images_with_complete_sets_and_exit_130(tmp_path, weights):
    folder = small_folder(tmp_path, count=30, size=32)
    out = tmp_path / "out"
    child = segcli_subprocess(["predict", str(folder), "--model", "lraspp", "--weights", str(weights),
                               "--out", str(out), "--device", "cpu", "--precision", "fp32"],
                              env={"COLUMNS": "1000"})
    deadline = time.monotonic() + 240
    while not list(out.glob("*.json")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, f"finished before the signal: {child.communicate()}"
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=240)
    assert child.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Interrupted: ") and "segmented" in last and "Traceback" not in stderr
    done = int(last.split()[1])
    assert 1 <= done < 30
    stems = {Path(name).stem for name in files_under(out) if name.endswith(".json")}
    # writes already running when the signal came finish, and are counted
    assert len(stems) == done
    assert files_under(out) == set().union(*(output_set(stem) for stem in stems))


def test_file_names_with_square_brackets_are_named_verbatim(tmp_path, weights):
    folder = tmp_path / "in"
    (folder / "x[").mkdir(parents=True)
    save_image(Image.fromarray(random_rgb(16, 16, 31)), folder / "good.png")
    (folder / "odd[bold]name.png").write_bytes(b"")
    (folder / "x[" / "y].png").write_bytes(b"")
    result = run_predict([folder], tmp_path / "out", weights)
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert len(lines_naming(result.stderr, "odd[bold]name.png is empty")) == 1
    assert len(lines_naming(result.stderr, "x[/y].png is empty")) == 1


def test_piped_run_prints_no_blank_line_where_the_progress_bar_would_be(tmp_path, weights):
    """Through a pipe there is no live bar to clear: stderr holds messages only, no empty line."""
    for index in range(3):
        save_image(Image.fromarray(random_rgb(24, 32, index)), tmp_path / "in" / f"{index}.png")
    result = run_predict([tmp_path / "in"], tmp_path / "out", weights)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("3 segmented in ") and "" not in lines, lines
