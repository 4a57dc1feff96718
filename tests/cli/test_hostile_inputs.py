"""Hostile and broken image files through the commands: a folder run names each bad file once and goes on,
evaluate and train stop with one line naming the bad file, stdin is refused from its header."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES
from segcli.models import build_model
from robustness_support import (
    CPU_FLAGS, assert_no_traceback, lines_naming, output_set, random_rgb, run_predict, save_image,
    save_tiny_checkpoint,
)
from test_hostile_images import (
    blp_bytes, dds_bytes, encoded, fake_ghostscript, png_with_a_broken_second_chunk, tiff_with_a_broken_second_page,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def test_hostile_files_in_a_folder_are_one_failed_line_each_and_ghostscript_never_runs(tmp_path, weights,
                                                                                      monkeypatch):
    marker = fake_ghostscript(tmp_path, monkeypatch)
    photos = tmp_path / "photos"
    save_image(Image.fromarray(random_rgb(24, 32)), photos / "good.png")
    bad = {
        "photo.jpg": (encoded(Image.new("RGB", (8, 8)), "EPS"), "not a supported format"),
        "sprite.png": (dds_bytes(), "not a supported format"),
        "texture.jpg": (blp_bytes(), "not a supported format"),
        "scan.tif": (tiff_with_a_broken_second_page(), "cannot decode image"),
        "broken.png": (png_with_a_broken_second_chunk(), "cannot decode image"),
    }
    for name, (data, _) in bad.items():
        (photos / name).write_bytes(data)
    result = run_predict([photos], tmp_path / "out", weights)
    assert_no_traceback(result)
    assert result.exit_code == 1, result.stderr
    for name, (_, reason) in bad.items():
        named = lines_naming(result.stderr, name)
        assert len(named) == 1 and named[0].startswith("failed: ") and reason in named[0], result.stderr
    assert "1 segmented, 5 failed" in result.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == output_set("good")
    assert not marker.exists()


# evaluate and train ---------------------------------------------------------------------------------------------

def voc_folder(root: Path, masks: dict[str, bytes | None]) -> Path:
    """A VOC-layout folder with one 24x32 image per id; the mask's bytes given, or a valid mask for None."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for image_id, mask in masks.items():
        Image.fromarray(random_rgb(24, 32)).save(root / "JPEGImages" / f"{image_id}.png")
        valid = Image.fromarray(rng.integers(0, len(SYNTH_CLASSES), (24, 32), dtype=np.uint8), "L")
        (root / "SegmentationClass" / f"{image_id}.png").write_bytes(mask if mask is not None else
                                                                     encoded(valid, "PNG"))
    for split in ("train", "val"):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in masks))
    (root / "classes.txt").write_text("\n".join(SYNTH_CLASSES) + "\n")
    return root


@pytest.fixture(scope="module")
def synth_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    record = CheckpointRecord(name="tiny", model="deeplabv1", dataset="segcli-synth", categories=SYNTH_CLASSES,
                              filename="tiny.safetensors", model_kwargs=(("width", 0.0625),))
    model = build_model("deeplabv1", len(SYNTH_CLASSES), width=0.0625)
    return save_segcli_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, record)


@pytest.mark.parametrize("mask", [png_with_a_broken_second_chunk(24, 32), b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 8 8\n"],
                         ids=["broken-png", "postscript"])
def test_evaluate_stops_with_one_line_naming_the_bad_pair(tmp_path, synth_checkpoint, mask):
    data = voc_folder(tmp_path / "data", {"a": None, "b": mask, "c": None})
    result = CliRunner().invoke(cli, ["evaluate", "--model", "deeplabv1", "--weights", str(synth_checkpoint),
                                      "--data", str(data), *CPU_FLAGS])
    assert_no_traceback(result)
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1, result.output
    assert str(data / "JPEGImages" / "b.png") in error[0] and str(data / "SegmentationClass" / "b.png") in error[0]


def test_train_stops_with_one_line_naming_the_bad_mask(tmp_path):
    data = voc_folder(tmp_path / "data", {"a": None, "b": png_with_a_broken_second_chunk(24, 32)})
    out = tmp_path / "t.safetensors"
    result = CliRunner().invoke(cli, ["train", "--model", "deeplabv1", "--data", str(data), "--out", str(out),
                                      "--iters", "1", "--model-kwarg", "width=0.0625", *CPU_FLAGS])
    assert_no_traceback(result)
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and str(data / "SegmentationClass" / "b.png") in error[0], result.output
    assert "cannot decode image" in error[0] and not out.exists()


# stdin ----------------------------------------------------------------------------------------------------------

def test_piped_garbage_is_refused_before_the_model_loads(tmp_path):
    missing = tmp_path / "no-such.safetensors"  # loading it would be the error if stdin were read later
    result = CliRunner().invoke(cli, ["predict", "-", "--out", "-", "--model", "lraspp", "--weights", str(missing),
                                      *CPU_FLAGS], input=b"y\n" * 100_000)
    assert result.exit_code == 1 and result.stdout_bytes == b""
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Error: stdin is not an image segcli can read: not a supported format"), result.stderr


def test_piped_bytes_over_the_bound_of_max_pixels_are_refused(tmp_path):
    missing = tmp_path / "no-such.safetensors"
    data = encoded(Image.new("RGB", (8, 8)), "PNG") + bytes(20_000_000)  # an image header, then 20 MB
    result = CliRunner().invoke(cli, ["predict", "-", "--out", "-", "--model", "lraspp", "--weights", str(missing),
                                      "--max-pixels", "1000", *CPU_FLAGS], input=data)
    assert result.exit_code == 1 and result.stdout_bytes == b""
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Error: stdin is over 16,785,216 bytes, the most an image within the limit of 1,000 pixels (max_pixels) can "
        "take"), result.stderr
    assert result.stderr.rstrip().endswith("; raise --max-pixels, or pass the file's path")


@pytest.mark.slow  # python and torch start in a child process
def test_yes_piped_into_predict_is_refused_at_once_with_little_memory(weights):
    """What `yes | segcli predict - --out -` sends (a bounded 50 MB of it): refused from the first bytes."""
    import os
    import threading

    child = subprocess.Popen([sys.executable, "-m", "segcli", "predict", "-", "--out", "-", "--model", "lraspp",
                              "--weights", str(weights), *CPU_FLAGS], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1"))
    sent = [0]

    def feed() -> None:
        block = b"y\n" * 32768
        try:
            while sent[0] < 50_000_000:
                child.stdin.write(block)
                sent[0] += len(block)
            child.stdin.close()
        except BrokenPipeError:
            pass  # segcli stopped reading: what a refusal from the header looks like to `yes`

    writer = threading.Thread(target=feed, daemon=True)
    started = time.perf_counter()
    writer.start()
    _, usage = os.wait4(child.pid, 0)[1:]
    seconds = time.perf_counter() - started
    child.returncode = 1
    stderr = child.stderr.read().decode()
    writer.join(timeout=10)
    print(f"sent {sent[0]:,} bytes; child peak RSS {usage.ru_maxrss:,} KiB; {seconds:.1f} s")
    assert sent[0] < 1_000_000, stderr  # it stopped after the header: the rest of the 50 MB was never read
    assert "Error: stdin is not an image segcli can read: not a supported format" in stderr, stderr
    assert child.stdout.read() == b""
    assert seconds < 60
