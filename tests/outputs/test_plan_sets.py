"""The output plan's view of a set already on disk: which sets are whole (kept by --skip-existing), which are
redone, and names at the file-name length limit. Each case is one whose file order matters: the damaged file
is not the last one checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from segcli.inputs import ImageSource
from segcli.outputs.plan import OutputOptions, OutputPlan
from segcli.outputs.results import ImageResult, RunInfo
from segcli.outputs.writer import write_image_outputs

CATEGORIES = ("background", "cat", "dog")
RUN = RunInfo(model="m", checkpoint="c", checkpoint_source="s", device="cpu", precision="fp32",
              categories=CATEGORIES, palette="voc")


def _options(out: Path, outputs: tuple[str, ...] | None = None, **flags) -> OutputOptions:
    return OutputOptions(out, outputs=outputs, categories=CATEGORIES, **flags)


def _write_set(plan: OutputPlan, item: ImageSource, labels: np.ndarray | None = None) -> None:
    labels = np.array([[0, 1], [1, 0]], np.uint8) if labels is None else labels  # background and cat, no dog
    result = ImageResult(item.path, np.zeros((*labels.shape, 3), np.uint8), labels)
    write_image_outputs(plan.paths_for(item.relative), result, RUN)


def _plan(tmp_path: Path, outputs: tuple[str, ...] | None = None) -> tuple[OutputPlan, ImageSource]:
    item = ImageSource(tmp_path / "in" / "a.jpg", Path("a.jpg"))
    plan = OutputPlan(_options(tmp_path / "out", outputs, skip_existing=True))
    _write_set(plan, item)
    return plan, item


def _redone(plan: OutputPlan, item: ImageSource) -> bool:
    run = plan.prepare([item])
    assert not run.failed
    if run.skipped == [item]:
        return False
    assert [(planned.source, planned.replace) for planned in run.todo] == [(item, True)]
    return True


def test_a_whole_set_is_kept(tmp_path):
    for outputs in (None, ("label", "masks", "json"), ("label", "masks"), ("masks", "json")):
        plan, item = _plan(tmp_path / "-".join(outputs or ("default",)), outputs)
        assert not _redone(plan, item), outputs


def test_an_empty_file_before_the_last_one_makes_the_set_incomplete(tmp_path):
    plan, item = _plan(tmp_path)
    (tmp_path / "out" / "a.png").write_bytes(b"")  # the label: the first file of the set, the JSON is whole
    assert _redone(plan, item)


def test_a_missing_file_before_the_last_one_makes_the_set_incomplete(tmp_path):
    plan, item = _plan(tmp_path, ("label", "masks", "json"))
    (tmp_path / "out" / "a.png").unlink()  # the label; after it the dog's file is absent too, as it should be
    assert _redone(plan, item)


def test_a_missing_file_of_a_class_the_summary_lists_makes_the_set_incomplete(tmp_path):
    plan, item = _plan(tmp_path, ("label", "masks", "json"))
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "a.json", "a.png", "a_mask_background.png", "a_mask_cat.png"]  # no dog in the labels: no dog file
    (tmp_path / "out" / "a_mask_cat.png").unlink()
    assert _redone(plan, item)


def test_a_summary_whose_class_list_cannot_be_read_makes_a_set_with_class_files_incomplete(tmp_path):
    summary = {"checkpoint": "c", "checkpoint_source": "s", "classes_present": "cat"}  # not a list of entries
    plan, item = _plan(tmp_path, ("label", "masks", "json"))
    (tmp_path / "out" / "a.json").write_text(json.dumps(summary))
    assert _redone(plan, item)
    summary["classes_present"] = [{"name": "cat"}]  # an entry without its index
    (tmp_path / "out" / "a.json").write_text(json.dumps(summary))
    assert _redone(plan, item)
    # the same summary in a set without class files: nothing to check against it, the set is kept
    plan, item = _plan(tmp_path / "fixed", ("label", "json"))
    (tmp_path / "fixed" / "out" / "a.json").write_text(json.dumps(summary))
    assert not _redone(plan, item)


def test_a_name_of_exactly_255_bytes_is_planned_and_256_fails_its_image(tmp_path):
    out = tmp_path / "out"
    fits = ImageSource(tmp_path / "fits.jpg", Path("é" * 125 + "f.jpg"))   # a.png of 2*125 + 1 + 4 = 255 bytes
    too_long = ImageSource(tmp_path / "long.jpg", Path("é" * 126 + ".jpg"))  # 2*126 + 4 = 256 bytes
    assert len(os.fsencode(Path(fits.relative.stem + ".png").name)) == 255
    run = OutputPlan(_options(out, ("label",))).prepare([fits, too_long])
    assert [item.source for item in run.todo] == [fits]
    assert [(failed, str(reason).endswith(".png: File name too long")) for failed, reason in run.failed] == [
        (too_long, True)]


def test_paths_for_the_kinds_asked(tmp_path):
    plan = OutputPlan(_options(Path("out"), ("label", "overlay", "json")))
    assert plan.paths_for(Path("d/x.jpg"), kinds=["overlay"]) == {"overlay": Path("out/d/x_overlay.png")}
    assert plan.paths_for(Path("d/x.jpg"), kinds=["masks"]) == {
        f"masks:{index}": Path(f"out/d/x_mask_{name}.png") for index, name in enumerate(CATEGORIES)}
    assert list(plan.paths_for(Path("x.jpg"))) == ["label", "overlay", "json"]
