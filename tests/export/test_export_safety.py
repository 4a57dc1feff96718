"""`segcli export` never replaces the checkpoint it exports from, refuses bad --out paths before the model
loads, and leaves no temporary file behind when stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from robustness_support import assert_no_traceback, save_tiny_checkpoint
from segcli.cli.main import cli


@pytest.fixture
def checkpoint(tmp_path):
    return save_tiny_checkpoint(tmp_path / "tiny.safetensors")


@pytest.fixture
def no_model_load(monkeypatch):
    import segcli.checkpoints.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(loading, "load_checkpoint_model", refuse)


def _export(*args: str):
    return CliRunner().invoke(cli, ["export", "--model", "lraspp", *args])


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_out_that_is_the_checkpoint_is_refused_even_with_overwrite(checkpoint, tmp_path, no_model_load, link):
    out = checkpoint
    if link == "symlink":
        out = tmp_path / "link.pt"
        out.symlink_to(checkpoint)
    elif link == "hardlink":
        out = tmp_path / "hard.pt"
        os.link(checkpoint, out)
    before = checkpoint.read_bytes()
    result = _export("--weights", str(checkpoint), "--out", str(out), "--overwrite", "--format", "torchscript")
    assert result.exit_code == 1, result.output
    assert_no_traceback(result)
    assert result.output.strip().splitlines() == [
        f"Error: {out} is an input of this run: not replaced; choose another --out"]
    assert checkpoint.read_bytes() == before


def test_out_under_a_regular_file_is_one_error_line_before_loading(checkpoint, tmp_path, no_model_load):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = _export("--weights", str(checkpoint), "--out", str(blocker / "m.pt"))
    assert result.exit_code == 1
    assert_no_traceback(result)
    assert result.output.strip().splitlines() == [
        f"Error: cannot write {blocker / 'm.pt'}: {blocker} is a file, not a folder; choose another --out"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_out_in_an_unwritable_folder_is_one_error_line_before_loading(checkpoint, tmp_path, no_model_load):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = _export("--weights", str(checkpoint), "--out", str(locked / "m.pt"))
    assert result.exit_code == 1 and "Permission denied" in result.output
    assert_no_traceback(result)


def test_out_where_no_file_can_be_made_is_one_error_line_before_loading(checkpoint, tmp_path, no_model_load,
                                                                       monkeypatch):
    import segcli.outputs.report_file as report_file

    def read_only(path):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(report_file, "create_temporary", read_only)  # what root meets on a read-only mount
    result = _export("--weights", str(checkpoint), "--out", str(tmp_path / "m.pt"))
    assert result.exit_code == 1
    assert_no_traceback(result)
    assert result.output.strip().splitlines() == [
        f"Error: cannot write {tmp_path / 'm.pt'}: Read-only file system; choose another --out"]


def test_existing_out_and_missing_onnx_are_refused_before_loading(checkpoint, tmp_path, no_model_load, monkeypatch):
    existing = tmp_path / "old.pt"
    existing.write_bytes(b"an earlier export")
    result = _export("--weights", str(checkpoint), "--out", str(existing))
    assert result.exit_code == 1 and "exists; pass --overwrite" in result.output, result.output
    assert existing.read_bytes() == b"an earlier export"
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    result = _export("--weights", str(checkpoint), "--out", str(tmp_path / "m.onnx"))
    assert result.exit_code == 1 and "pip install" in result.output, result.output
    assert not (tmp_path / "m.onnx").exists()


KILLED_EXPORT = """
import os, signal, sys, time
import segcli.export.exporter as exporter

def killed(graph, example, temporary, *args, **kwargs):
    temporary.write_bytes(b"half a model" * 1000)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)

exporter._write_and_verify = killed
from segcli.cli.main import main
main(["export", "--model", "lraspp", "--weights", sys.argv[1], "--out", sys.argv[2], "--size", "32"])
"""


def test_sigterm_during_export_removes_the_temporary(checkpoint, tmp_path):
    out = tmp_path / "out" / "m.pt"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_EXPORT), str(checkpoint), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "Terminated" in done.stderr and "Traceback" not in done.stderr
    assert sorted(os.listdir(out.parent)) == []


@pytest.mark.slow
def test_the_next_export_removes_a_killed_exports_temporaries(checkpoint, tmp_path):
    stale = [tmp_path / ".m.pt.0123abcd.tmp", tmp_path / ".m.pt.verification.json.89abcdef.tmp"]
    for path in stale:
        path.write_bytes(b"left by a killed export")
    mine = tmp_path / ".notes.txt.0123abcd.tmp"  # not a temporary of this export's files
    mine.write_bytes(b"x")
    result = _export("--weights", str(checkpoint), "--out", str(tmp_path / "m.pt"), "--size", "32", "--no-verify")
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in stale) and mine.exists()
    assert "removed 2 temporary file(s)" in result.output
