"""`segcli predict --outputs/--classes` through the CLI, with the tiny model on the CPU."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixed_classes import save_balanced_checkpoint
from schema_support import assert_valid_rle, assert_valid_summary
from robustness_support import (
    TINY_CATEGORIES, assert_no_traceback, files_under, random_rgb, run_predict, save_image,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_balanced_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-lraspp.safetensors")


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "my photos"
    save_image(Image.fromarray(random_rgb(40, 56, 1)), folder / "beach day.jpg", quality=95)
    save_image(Image.fromarray(random_rgb(32, 32, 2)), folder / "sub" / "cat.png")
    return folder


def label_map(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        return np.asarray(image)


def test_every_output_gives_back_the_label_map(tmp_path, photos, weights):
    coco_mask = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed (segcli[coco])")
    out = tmp_path / "out"
    result = run_predict([photos], out, weights, "--outputs", "label,masks,cutout,rle,json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    for stem in ("beach day", "sub/cat"):
        labels = label_map(out / f"{stem}.png")
        present = np.unique(labels)
        assert len(present) >= 2  # the balanced model shows more than one class
        rebuilt = np.full(labels.shape, 255, np.uint8)
        for index in present:
            with Image.open(out / f"{stem}_mask_{TINY_CATEGORIES[index]}.png") as mask:
                assert mask.mode == "1"
                rebuilt[np.asarray(mask, dtype=bool)] = index
        np.testing.assert_array_equal(rebuilt, labels)
        with Image.open(out / f"{stem}_cutout.png") as cutout:
            np.testing.assert_array_equal(np.asarray(cutout)[..., 3] > 0, labels != 0)  # all but background
        rle = json.loads((out / f"{stem}.rle.json").read_text())
        assert_valid_rle(rle)
        annotations = rle["annotations"]
        rebuilt = np.full(labels.shape, 255, np.uint8)
        for annotation in annotations:
            rebuilt[coco_mask.decode(annotation["segmentation"]).astype(bool)] = annotation["category_id"]
        np.testing.assert_array_equal(rebuilt, labels)
        summary = json.loads((out / f"{stem}.json").read_text())
        assert_valid_summary(summary)
        assert [entry["index"] for entry in summary["classes_present"]] == list(present)
    assert not any(name.endswith("_overlay.png") for name in files_under(out))


def test_classes_by_name_and_index_limit_masks_and_cutout(tmp_path, photos, weights):
    out = tmp_path / "out"
    result = run_predict([photos / "beach day.jpg"], out, weights, "--outputs", "masks,cutout,label",
                         "--classes", "Disc, 2")
    assert result.exit_code == 0, result.stderr
    labels = label_map(out / "beach day.png")
    masks = sorted(name for name in files_under(out) if "_mask_" in name)
    assert masks == [f"beach day_mask_{TINY_CATEGORIES[i]}.png" for i in (1, 2) if (labels == i).any()]
    with Image.open(out / "beach day_cutout.png") as cutout:
        np.testing.assert_array_equal(np.asarray(cutout)[..., 3] > 0, np.isin(labels, [1, 2]))


def test_an_unknown_class_is_a_usage_error_listing_the_checkpoints_classes(tmp_path, photos, weights):
    result = run_predict([photos], tmp_path / "out", weights, "--outputs", "masks", "--classes", "disc,person")
    assert_no_traceback(result)
    assert result.exit_code == 2
    assert "unknown class 'person' in --classes; tiny-lraspp has: 0 background, 1 disc, 2 square" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--outputs", "label,mask"], "unknown output 'mask': choose from label, overlay, probs, masks, cutout, rle, json"),
    (["--classes", "disc"], "--classes limits masks, cutout, rle: add one of them to --outputs"),
    (["--outputs", ","], "give at least one value"),
])
def test_contradictory_output_flags_are_usage_errors(tmp_path, photos, weights, args, message):
    result = run_predict([photos], tmp_path / "out", weights, *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_outputs_say_what_the_old_flags_said(tmp_path, photos, weights):
    """--outputs label,json,probs: what --no-overlay --save-probs asked for before they were replaced."""
    out = tmp_path / "out"
    result = run_predict([photos / "beach day.jpg"], out, weights, "--outputs", "label,json,probs")
    assert result.exit_code == 0, result.stderr
    assert files_under(out) == {"beach day.png", "beach day_probs.npz", "beach day.json"}


def test_rle_without_pycocotools_is_one_line_with_the_pip_hint(tmp_path, photos, weights, monkeypatch):
    real_import = builtins.__import__

    def no_pycocotools(name, *args, **kwargs):
        if name.startswith("pycocotools"):
            raise ImportError("No module named 'pycocotools'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pycocotools)
    result = run_predict([photos], tmp_path / "out", weights, "--outputs", "label,rle")
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: COCO RLE needs pycocotools: pip install 'segcli[coco]' (or pip install pycocotools)"]
    assert not (tmp_path / "out").exists()
