"""Outputs: exact label PNGs, overlays that never hide the picture, safe and atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segcli.atomic
import segcli.outputs as outputs
from segcli.errors import OutputError
from segcli.outputs import (
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_json,
    class_fractions,
    colorize,
    label_png,
    output_paths,
    overlay,
    write_prediction,
)
from segcli.palettes import VOC_CLASSES, voc_colors

RNG = np.random.default_rng(0)
CATEGORIES = list(VOC_CLASSES)


def sample(height: int = 24, width: int = 32):
    labels = RNG.integers(0, 21, (height, width)).astype(np.int64)
    labels[0, 0] = 255
    image = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return image, labels


def test_label_png_reads_back_exact_values_and_voc_colours(tmp_path):
    _, labels = sample()
    path = tmp_path / "mask.png"
    atomic_save_image(label_png(labels, "voc", 21), path)
    back = Image.open(path)
    assert back.mode == "P"
    np.testing.assert_array_equal(np.asarray(back), labels)
    palette = back.getpalette()
    for index in (0, 1, 15, 20):
        assert tuple(palette[3 * index:3 * index + 3]) == voc_colors()[index]
    assert tuple(palette[3 * 255:3 * 255 + 3]) == (224, 224, 192)
    assert tuple(voc_colors()[15]) == (192, 128, 128)  # person, the well-known VOC colour
    with pytest.raises(ValueError, match="outside 0..20"):
        label_png(np.full((2, 2), 21), "voc", 21)


def test_colorize_matches_palette_and_fractions_count_pixels():
    labels = np.array([[0, 1, 1], [15, 255, 1]])
    colours = colorize(labels, "voc", 21)
    assert colours.shape == (2, 3, 3) and tuple(colours[1, 0]) == (192, 128, 128)
    np.testing.assert_allclose(class_fractions(labels, 21)[[0, 1, 15, 2]], [1 / 6, 3 / 6, 1 / 6, 0])


def test_overlay_keeps_picture_and_adds_legend_strip():
    image, labels = sample()
    unchanged = overlay(image, labels, CATEGORIES, "voc", alpha=0.0)
    width, height = unchanged.size
    assert height > 24 and width >= 32  # a legend strip below; tiny images get a wider canvas
    np.testing.assert_array_equal(np.asarray(unchanged)[:24, :32], image)
    strip = np.asarray(unchanged)[24:]
    assert (strip != 255).any()  # something is drawn in the legend
    full = np.asarray(overlay(image, labels, CATEGORIES, "voc", alpha=1.0))[:24, :32]
    np.testing.assert_array_equal(full, colorize(labels, "voc", 21))
    half = np.asarray(overlay(image, labels, CATEGORIES, "voc", alpha=0.5))[:24, :32].astype(int)
    expected = (image.astype(int) + colorize(labels, "voc", 21).astype(int)) / 2
    assert np.abs(half - expected).max() <= 1


def test_overlay_legend_grows_with_more_classes():
    image = np.zeros((4, 4, 3), np.uint8)
    one = overlay(image, np.zeros((4, 4), np.int64), CATEGORIES, "voc")
    many = overlay(image, np.arange(16).reshape(4, 4), CATEGORIES, "voc")
    assert one.width > 4 and one.height > 4  # readable even for a 4x4 picture
    assert many.height > one.height


def test_output_paths_keep_subfolders():
    paths = output_paths(Path("out"), Path("trip/day1/img.jpg"))
    assert paths == {
        "labels": Path("out/trip/day1/img.png"),
        "overlay": Path("out/trip/day1/img_overlay.png"),
        "summary": Path("out/trip/day1/img.json"),
        "probabilities": Path("out/trip/day1/img_probs.npz"),
    }
    assert output_paths("out", "a/x.jpg")["labels"] != output_paths("out", "b/x.jpg")["labels"]
    with pytest.raises(ValueError):
        output_paths("out", "../escape.jpg")


def test_write_prediction_writes_everything(tmp_path):
    image, labels = sample()
    probabilities = RNG.random((21, 24, 32)).astype(np.float32)
    written = write_prediction(
        tmp_path, Path("sub/photo.jpg"), image, labels, CATEGORIES, "voc",
        summary={"model": "tiny"}, probabilities=probabilities,
    )
    folder = tmp_path / "sub"
    assert set(written) == {folder / "photo.png", folder / "photo_overlay.png", folder / "photo.json",
                            folder / "photo_probs.npz"}
    document = json.loads((folder / "photo.json").read_text())
    assert document["model"] == "tiny"
    counts = np.bincount(labels[labels != 255].ravel(), minlength=21)
    assert [entry["index"] for entry in document["classes_present"]] == list(np.flatnonzero(counts))
    person = next(entry for entry in document["classes_present"] if entry["index"] == 15)
    assert person["name"] == "person"
    assert person["pixel_fraction"] == pytest.approx(counts[15] / labels.size, abs=1e-6)
    with np.load(folder / "photo_probs.npz") as saved:
        assert saved["probs"].dtype == np.float16
        np.testing.assert_allclose(saved["probs"], probabilities, atol=1e-3)
        assert list(saved["categories"]) == CATEGORIES
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_existing_outputs_refused_and_left_untouched(tmp_path):
    image, labels = sample()
    write_prediction(tmp_path, Path("a.jpg"), image, labels, CATEGORIES, "voc", summary={})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = np.zeros_like(labels)
    with pytest.raises(OutputError, match=r"a\.png already exists.*--overwrite.*--skip-existing"):
        write_prediction(tmp_path, Path("a.jpg"), image, other, CATEGORIES, "voc", summary={"x": 1})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_prediction(tmp_path, Path("a.jpg"), image, other, CATEGORIES, "voc", summary={}, overwrite=True)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), other)


def test_failed_serialisation_leaves_no_partial_or_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    atomic_write_bytes(target, b"old contents")

    def half_written_save(self, handle, *args, **kwargs):
        handle.write(b"\x89PNG half")
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(Image.Image, "save", half_written_save)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        atomic_save_image(Image.new("RGB", (2, 2)), target)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with pytest.raises(ValueError):  # NaN is not JSON; nothing half-written either
        atomic_write_json(tmp_path / "s.json", {"x": float("nan")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_unwritable_folder_gives_output_error(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:  # chmod does not stop root: make the final rename fail instead
        def refuse(src, dst):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(segcli.atomic.os, "replace", refuse)
    else:
        folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=r"cannot write .*mask\.png: Permission denied"):
            atomic_write_bytes(folder / "mask.png", b"data")
    finally:
        folder.chmod(0o700)
    assert list(folder.iterdir()) == []


def test_disk_full_becomes_output_error(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segcli.atomic.os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write_json(tmp_path / "s.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []
