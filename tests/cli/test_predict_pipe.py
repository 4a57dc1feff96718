"""`segcli predict - --out -` in a real shell pipe: image bytes in, one PNG out, messages on stderr."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixed_classes import save_balanced_checkpoint
from robustness_support import CPU_FLAGS, random_rgb, run_predict, save_image



@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_balanced_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny pipe.safetensors")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return save_image(Image.fromarray(random_rgb(40, 56, 3)), tmp_path_factory.mktemp("in") / "a photo.jpg",
                      quality=95)


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, capture_output=True, timeout=240)


def segcli(weights: Path, *args: str) -> str:
    words = [sys.executable, "-m", "segcli", "predict", *args, "--model", "lraspp", "--weights", str(weights),
             *CPU_FLAGS]
    return " ".join(shlex.quote(word) for word in words)


@pytest.mark.slow  # python and torch start in a child process (~10-20 s on 2 shared cores)
def test_label_png_through_a_shell_pipe_equals_the_folder_runs(tmp_path, photo, weights):
    big = save_image(Image.fromarray(random_rgb(600, 800, 4)), tmp_path / "big photo.png")  # overlay: ~1.4 MB
    piped = shell(f"cat {shlex.quote(str(photo))} | {segcli(weights, '-', '--out', '-')} > out.png && "
                  f"{segcli(weights, '-', '--out', '-', '--outputs', 'overlay')} < {shlex.quote(str(big))} | "
                  "cat > overlay.png", tmp_path)
    assert piped.returncode == 0, piped.stderr.decode()
    assert b"lraspp" in piped.stderr  # messages go to stderr, the PNG alone to stdout
    folder = run_predict([photo, big], tmp_path / "folder", weights)
    assert folder.exit_code == 0, folder.stderr
    assert (tmp_path / "out.png").read_bytes() == (tmp_path / "folder" / "a photo.png").read_bytes()
    assert (tmp_path / "overlay.png").read_bytes() == (tmp_path / "folder" / "big photo_overlay.png").read_bytes()
    with Image.open(tmp_path / "out.png") as label:
        assert label.mode == "P" and label.size == (56, 40) and len(np.unique(np.asarray(label))) >= 2


def piped_in_process(weights: Path, data: bytes, *args: str):
    """`segcli predict - --out - ARGS` in-process, `data` on stdin (CliRunner keeps stdout's bytes apart)."""
    from click.testing import CliRunner

    from segcli.cli.main import cli

    return CliRunner().invoke(cli, ["predict", "-", "--out", "-", "--model", "lraspp", "--weights", str(weights),
                                    *CPU_FLAGS, *args], input=data)


def test_cutout_on_stdout_is_rgba_matching_the_label(photo, weights):
    label = piped_in_process(weights, photo.read_bytes())
    cutout = piped_in_process(weights, photo.read_bytes(), "--outputs", "cutout", "--classes", "disc")
    assert label.exit_code == 0 and cutout.exit_code == 0, cutout.stderr
    with Image.open(io.BytesIO(cutout.stdout_bytes)) as rgba, Image.open(io.BytesIO(label.stdout_bytes)) as labels:
        assert rgba.mode == "RGBA" and labels.mode == "P"
        np.testing.assert_array_equal(np.asarray(rgba)[..., 3] > 0, np.asarray(labels) == 1)


def test_a_file_to_stdout_is_the_same_png_as_from_stdin(photo, weights):
    from robustness_support import run_predict as run

    from_file = run([photo], Path("-"), weights, "--outputs", "overlay")
    from_stdin = piped_in_process(weights, photo.read_bytes(), "--outputs", "overlay")
    assert from_file.exit_code == 0, from_file.stderr
    assert from_file.stdout_bytes == from_stdin.stdout_bytes and from_file.stdout_bytes.startswith(b"\x89PNG")


def test_garbage_on_stdin_is_one_error_line_and_nothing_on_stdout(weights):
    result = piped_in_process(weights, b"not an image\n")
    assert result.exit_code == 1 and result.stdout_bytes == b""
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Error: stdin is not an image segcli can read: not a supported format (segcli reads JPEG, PNG")


@pytest.mark.parametrize("args, message", [
    (["-", "--out", "folder"], "an image read from stdin (-) goes to stdout: add --out -"),
    (["-", "--out", "-", "--outputs", "label,overlay"], "--out - writes one file to stdout: choose one of"),
    (["-", "--out", "-", "--outputs", "masks"], "--out - writes one file to stdout: choose one of"),
    (["-", "--out", "-", "--report"], "--report do(es) not apply to --out -"),
    (["a.jpg", "b.jpg", "--out", "-"], "give one input (- reads stdin)"),
])
def test_pipe_usage_errors(tmp_path, weights, args, message):
    from robustness_support import run_predict as run  # in-process: no child needed for a usage error

    result = run(args[:args.index("--out")], Path(args[args.index("--out") + 1]), weights,
                 *args[args.index("--out") + 2:])
    assert result.exit_code == 2 and message in result.stderr, result.stderr


class SlowReader(io.RawIOBase):
    """A raw stdout whose reader takes at most `chunk` bytes per write, then (optionally) goes away."""

    def __init__(self, chunk: int, closes_after: int | None = None) -> None:
        self.chunk, self.closes_after, self.received = chunk, closes_after, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.closes_after is not None and len(self.received) >= self.closes_after:
            raise BrokenPipeError(32, "Broken pipe")
        self.received += bytes(data[:self.chunk])
        return min(self.chunk, len(data))


def test_every_byte_reaches_a_pipe_that_takes_part_of_each_write():
    from segcli.cli.output_choice import write_all

    data = bytes(range(256)) * 1000
    reader = SlowReader(65536)
    write_all(reader, data)
    assert bytes(reader.received) == data


def test_a_reader_that_goes_away_is_one_error():
    from segcli.cli.output_choice import write_all
    from segcli.errors import OutputError

    with pytest.raises(OutputError, match="stdout was closed before the output was written"):
        write_all(SlowReader(1000, closes_after=3000), b"x" * 10000)


@pytest.mark.parametrize("item, message", [
    ("folder", "is a folder, and --out - writes one image's output to stdout"),
    ("*.jpg", "no such file (a glob: --out - takes one file)"),
])
def test_a_folder_or_glob_to_stdout_is_a_usage_error_before_the_model_loads(tmp_path, weights, monkeypatch,
                                                                            item, message):
    from robustness_support import run_predict as run
    from segcli.engine import SegmentationEngine

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the usage error")

    monkeypatch.setattr(SegmentationEngine, "load", classmethod(refuse))
    (tmp_path / "folder").mkdir()
    save_image(Image.fromarray(random_rgb(8, 8)), tmp_path / "folder" / "a.jpg")
    monkeypatch.chdir(tmp_path)
    result = run([item], Path("-"), weights)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
