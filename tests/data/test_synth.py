"""Procedural scenes: deterministic, every class drawn, palettized masks; VOC reader errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES, make_scene, write_synth_dataset
from segcli.data.voc import augment, load_mask, read_classes, read_split
from segcli.errors import DatasetError
from segcli.palettes import flat_palette


def test_same_seed_same_scene_other_seed_differs():
    a, b = make_scene(3, 5, (48, 48)), make_scene(3, 5, (48, 48))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    other = make_scene(4, 5, (48, 48))
    assert not np.array_equal(a.image, other.image)


def test_folder_bytes_are_deterministic(tmp_path):
    first = write_synth_dataset(tmp_path / "a", 4, seed=7, size=(40, 48))
    write_synth_dataset(tmp_path / "b", 4, seed=7, size=(40, 48))
    for image_id in first.train_ids + first.val_ids:
        for sub, suffix in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
            assert (tmp_path / "a" / sub / f"{image_id}{suffix}").read_bytes() == \
                   (tmp_path / "b" / sub / f"{image_id}{suffix}").read_bytes()


def test_every_class_appears_and_masks_are_valid():
    seen = set()
    for index in range(16):
        scene = make_scene(0, index, (64, 64))
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        values = set(np.unique(scene.mask).tolist())
        assert values <= set(range(len(SYNTH_CLASSES))) | {255}
        seen |= values
    assert seen >= set(range(len(SYNTH_CLASSES)))


def test_ignore_band_keeps_every_object_pixel():
    scene = make_scene(1, 2, (64, 64))
    ignored = np.argwhere(scene.mask == 255)
    assert len(ignored) > 0
    padded = np.pad(scene.mask, 1)
    for y, x in ignored[:50]:  # each ignored pixel touches an object
        window = padded[y:y + 3, x:x + 3]
        assert ((window > 0) & (window < 255)).any()


def test_cli_writes_voc_layout(tmp_path):
    out = tmp_path / "synth"
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(out), "--n", "5", "--seed", "2",
                                      "--size", "32x40", "--val-fraction", "0.4"])
    assert result.exit_code == 0, result.output
    train = (out / "ImageSets/Segmentation/train.txt").read_text().split()
    val = (out / "ImageSets/Segmentation/val.txt").read_text().split()
    assert len(train) == 3 and len(val) == 2
    mask = Image.open(out / "SegmentationClass" / f"{train[0]}.png")
    assert mask.mode == "P" and mask.size == (40, 32)
    assert mask.getpalette()[:3 * 9] == flat_palette("synth", 9)[:3 * 9]
    assert Image.open(out / "JPEGImages" / f"{train[0]}.jpg").size == (40, 32)
    assert json.loads((out / "dataset.json").read_text())["classes"] == list(SYNTH_CLASSES)
    assert read_classes(out) == SYNTH_CLASSES
    assert (out / "classes.txt").read_text().split() == list(SYNTH_CLASSES)
    pairs = read_split(out, "val")
    assert [p[0].stem for p in pairs] == val
    # a second write into the same folder needs --overwrite
    again = CliRunner().invoke(cli, ["data", "synth", "--out", str(out), "--n", "5"])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_reader_errors_on_broken_layouts(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_split(tmp_path / "missing", "train")
    with pytest.raises(DatasetError, match="no split file"):
        read_split(tmp_path, "train")
    write_synth_dataset(tmp_path / "d", 3, seed=0, size=(32, 32), val_fraction=0.0)
    with pytest.raises(DatasetError, match="lists no image ids"):
        read_split(tmp_path / "d", "val")
    first = read_split(tmp_path / "d", "train")[0]
    first[1].unlink()
    with pytest.raises(DatasetError, match="mask for id"):
        read_split(tmp_path / "d", "train")
    rgb_mask = tmp_path / "rgb.png"
    Image.new("RGB", (4, 4)).save(rgb_mask)
    with pytest.raises(DatasetError, match="palettized"):
        load_mask(rgb_mask)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 4), 12, np.uint8)).save(grey)
    with pytest.raises(DatasetError, match="label 12"):
        load_mask(grey, num_classes=9)


def test_augment_pads_with_ignore_and_keeps_labels():
    image = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 10:20] = 3
    out_image, out_mask = augment(image, mask, np.random.default_rng(0), crop=(64, 64), scale_range=(1.0, 1.0))
    assert out_image.shape == (64, 64, 3) and out_mask.shape == (64, 64)
    assert set(np.unique(out_mask).tolist()) == {0, 3, 255}
    assert (out_mask == 3).sum() == 100 and (out_mask == 255).sum() == 64 * 64 - 600


def test_worker_processes_write_the_same_bytes(tmp_path):
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(tmp_path / "parallel"), "--n", "7", "--seed", "3",
                                      "--size", "32x40", "--workers", "3"])
    assert result.exit_code == 0, result.output
    serial = write_synth_dataset(tmp_path / "serial", 7, seed=3, size=(32, 40))
    for image_id in serial.train_ids + serial.val_ids:
        for sub, suffix in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
            assert (tmp_path / "parallel" / sub / f"{image_id}{suffix}").read_bytes() == \
                (tmp_path / "serial" / sub / f"{image_id}{suffix}").read_bytes()
    for name in ("ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/val.txt", "dataset.json"):
        assert (tmp_path / "parallel" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
