"""One image's set of outputs: every file exact, and replaced whole or not at all."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segcli.atomic
from segcli.errors import OutputError
from segcli.outputs.kinds import KINDS, summary_document
from segcli.outputs.overlay import overlay
from segcli.outputs.plan import OutputOptions, OutputPlan
from segcli.outputs.results import ImageResult, RunInfo
from segcli.outputs.writer import write_image_outputs
from segcli.palettes import VOC_CLASSES, flat_palette

RNG = np.random.default_rng(0)
RUN = RunInfo(model="tiny", checkpoint="tiny-ckpt", checkpoint_source="file given: x", device="cpu",
              precision="fp32", categories=tuple(VOC_CLASSES), palette="voc", alpha=0.5)


def result(seed: int = 0, probabilities: bool = False) -> ImageResult:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 21, (24, 32)).astype(np.uint8)
    probs = rng.random((21, 24, 32)).astype(np.float32) if probabilities else None
    return ImageResult(Path("/photos/sub/photo.jpg"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), labels,
                       probs, note="a note", timings_ms={"forward": 1.23456})


def paths(folder: Path, probabilities: bool = False) -> dict[str, Path]:
    return OutputPlan(OutputOptions(folder, save_probabilities=probabilities)).paths_for(Path("sub/photo.jpg"))


def test_a_set_holds_exact_labels_overlay_probabilities_and_summary(tmp_path):
    image = result(probabilities=True)
    targets = paths(tmp_path, probabilities=True)
    timings = write_image_outputs(targets, image, RUN)
    assert set(timings) == {"label", "overlay", "probs", "json", "rename"}
    folder = tmp_path / "sub"
    assert sorted(p.name for p in folder.iterdir()) == ["photo.json", "photo.png", "photo_overlay.png",
                                                         "photo_probs.npz"]
    with Image.open(folder / "photo.png") as label:
        assert label.mode == "P" and label.getpalette() == flat_palette("voc", 21)
        np.testing.assert_array_equal(np.asarray(label), image.labels)
    with Image.open(folder / "photo_overlay.png") as drawn:
        np.testing.assert_array_equal(np.asarray(drawn)[:24, :32], np.asarray(overlay(
            image.rgb, image.labels, RUN.categories, "voc", 0.5))[:24, :32])
    with np.load(folder / "photo_probs.npz") as saved:
        np.testing.assert_allclose(saved["probs"], image.probabilities, atol=1e-3)
        assert list(saved["categories"]) == list(VOC_CLASSES)
    document = json.loads((folder / "photo.json").read_text())
    counts = np.bincount(image.labels.ravel(), minlength=21)
    assert document["image"] == "/photos/sub/photo.jpg" and document["size"] == [32, 24]
    assert document["note"] == "a note" and document["timings_ms"] == {"forward": 1.235}
    assert [entry["index"] for entry in document["classes_present"]] == list(np.flatnonzero(counts))
    person = next(entry for entry in document["classes_present"] if entry["index"] == 15)
    assert person["name"] == "person" and person["pixel_fraction"] == pytest.approx(counts[15] / 768, abs=1e-6)
    assert document == summary_document(image, RUN)


def test_the_run_note_joins_the_image_note():
    noted = dataclasses.replace(RUN, note="trained on synthetic scenes only")
    assert summary_document(result(), noted)["note"] == "a note; trained on synthetic scenes only"
    bare = ImageResult(Path("x.jpg"), np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8))
    assert summary_document(bare, RUN)["note"] is None
    assert summary_document(bare, noted)["note"] == "trained on synthetic scenes only"


def test_the_same_prediction_writes_the_same_bytes(tmp_path):
    """A second engine (another process, another machine) calling the same writer gets identical files."""
    write_image_outputs(paths(tmp_path / "one"), result(), RUN)
    write_image_outputs(paths(tmp_path / "two"), result(), RUN)
    for name in ("photo.png", "photo_overlay.png", "photo.json"):
        assert (tmp_path / "one" / "sub" / name).read_bytes() == (tmp_path / "two" / "sub" / name).read_bytes()


def test_a_failing_kind_leaves_the_old_set_complete_and_no_temporary(tmp_path, monkeypatch):
    targets = paths(tmp_path)
    write_image_outputs(targets, result(1), RUN)
    before = {path: path.read_bytes() for path in targets.values()}

    def broken(image, run, handle):
        handle.write(b"half an overlay")
        raise OutputError("encoder gave up")

    monkeypatch.setitem(KINDS, "overlay", KINDS["overlay"].__class__("overlay", "{stem}_overlay.png", broken,
                                                                     KINDS["overlay"].is_ours))
    with pytest.raises(OutputError, match="encoder gave up"):
        write_image_outputs(targets, result(2), RUN, replace=True)
    assert {path: path.read_bytes() for path in targets.values()} == before
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["photo.json", "photo.png", "photo_overlay.png"]


def test_a_new_set_skips_fsync_and_a_replacing_set_is_fsynced(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(segcli.atomic.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    targets = paths(tmp_path)
    write_image_outputs(targets, result(1), RUN)
    assert synced == []  # it can be made again, and it replaces nothing
    write_image_outputs(targets, result(2), RUN, replace=True)
    assert len(synced) == len(targets)  # an old set is at stake: its replacement is on disk before the renames


def test_an_existing_set_is_not_replaced_without_replace(tmp_path):
    targets = paths(tmp_path)
    write_image_outputs(targets, result(1), RUN)
    with pytest.raises(OutputError, match="photo.json already exists"):
        write_image_outputs(targets, result(2), RUN)


def test_a_folder_that_cannot_be_made_is_an_output_error(tmp_path):
    (tmp_path / "sub").write_text("a file where the folder should be")
    with pytest.raises(OutputError, match=r"cannot create folder .*sub: File exists"):
        write_image_outputs(paths(tmp_path), result(), RUN)


def test_is_ours_recognises_each_kind_it_wrote(tmp_path):
    targets = paths(tmp_path, probabilities=True)
    write_image_outputs(targets, result(probabilities=True), RUN)
    for name, path in targets.items():
        assert KINDS[name].is_ours(path), name
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.json").write_text('{"a": 1}')
    Image.new("P", (2, 2)).save(foreign / "x.png")
    np.savez(foreign / "x_probs.npz", other=np.zeros(2))
    assert not KINDS["json"].is_ours(foreign / "x.json")
    assert not KINDS["label"].is_ours(foreign / "x.png")
    assert not KINDS["probs"].is_ours(foreign / "x_probs.npz")
    buffer = io.BytesIO()
    KINDS["label"].write(result(), RUN, buffer)
    assert buffer.getvalue().startswith(b"\x89PNG")
