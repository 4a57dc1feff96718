"""evaluate and train read images as predict does (segcli.imageio): EXIF orientation, pixel limit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageOps

from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.record import CheckpointRecord
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES
from segcli.models import build_model
from robustness_support import assert_no_traceback, png_with_header_size

CPU = ["--device", "cpu", "--precision", "fp32"]


def _voc_folder(root: Path, image: Path, mask: np.ndarray) -> Path:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    shutil.copy(image, root / "JPEGImages" / f"scene{image.suffix}")
    Image.fromarray(mask, "L").save(root / "SegmentationClass" / "scene.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("scene\n")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("scene\n")
    (root / "classes.txt").write_text("\n".join(SYNTH_CLASSES) + "\n")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    record = CheckpointRecord(name="tiny", model="deeplabv1", dataset="segcli-synth", categories=SYNTH_CLASSES,
                              filename="tiny.safetensors", model_kwargs=(("width", 0.0625),))
    model = build_model("deeplabv1", len(SYNTH_CLASSES), width=0.0625)
    return save_segcli_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, record)


def _evaluate(checkpoint: Path, data: Path, *extra: str):
    return CliRunner().invoke(cli, ["evaluate", "--model", "deeplabv1", "--weights", str(checkpoint),
                                    "--data", str(data), "--json", "-", *CPU, *extra])


def test_exif_rotated_jpeg_scores_as_its_upright_copy(tmp_path, checkpoint):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (36, 52, 3), dtype=np.uint8)  # as the camera stored it: 52 wide, 36 high
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(rotated, quality=95, exif=exif)
    upright = tmp_path / "upright.png"  # what a viewer shows, saved losslessly
    with Image.open(rotated) as image:
        ImageOps.exif_transpose(image).save(upright)
    mask = rng.integers(0, len(SYNTH_CLASSES), (52, 36), dtype=np.uint8)  # in displayed orientation
    scores = []
    for image in (rotated, upright):
        result = _evaluate(checkpoint, _voc_folder(tmp_path / image.stem, image, mask))
        assert result.exit_code == 0, result.output
        scores.append(json.loads(result.stdout))
    assert scores[0]["per_class"] == scores[1]["per_class"] and scores[0]["miou"] == scores[1]["miou"]


def test_too_big_images_give_one_line_errors_in_evaluate_and_train(tmp_path, checkpoint):
    bomb = png_with_header_size(tmp_path / "bomb.png", 20_000, 20_000)  # 400 MP claimed: above every limit
    data = _voc_folder(tmp_path / "bomb", bomb, np.zeros((8, 8), np.uint8))
    result = _evaluate(checkpoint, data)
    assert result.exit_code == 1 and "400.0 MP, above the 100 MP limit (max_pixels); fix the pair" in result.output
    assert result.output.rstrip().endswith("; raise it with --max-pixels")  # the CLI edge adds the flag
    assert_no_traceback(result)

    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(small)
    data = _voc_folder(tmp_path / "small", small, np.zeros((30, 40), np.uint8))
    result = _evaluate(checkpoint, data, "--max-pixels", "1000")
    assert result.exit_code == 1 and "above the 1,000 pixels limit" in result.output
    assert_no_traceback(result)
    result = CliRunner().invoke(cli, ["train", "--model", "deeplabv1", "--data", str(data), "--out",
                                      str(tmp_path / "t.safetensors"), "--iters", "1", "--max-pixels", "1000",
                                      "--model-kwarg", "width=0.0625", *CPU])
    assert result.exit_code == 1 and "above the 1,000 pixels limit" in result.output
    assert_no_traceback(result)
