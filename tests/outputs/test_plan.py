"""The output plan: names per image, and every decision about files already there, made before the model loads."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcli.errors import OutputError, with_hint
from segcli.inputs import ImageSource
from segcli.outputs.plan import OutputOptions, OutputPlan, Refusal
from segcli.outputs.results import ImageResult, RunInfo
from segcli.outputs.writer import write_image_outputs

RUN = RunInfo(model="m", checkpoint="c", checkpoint_source="s", device="cpu", precision="fp32",
              categories=("background", "thing"), palette="voc")


def source(folder: Path, relative: str) -> ImageSource:
    return ImageSource(folder / relative, Path(relative))


def write_set(plan: OutputPlan, item: ImageSource) -> None:
    result = ImageResult(item.path, np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8))
    write_image_outputs(plan.paths_for(item.relative), result, RUN)


def test_paths_keep_subfolders_and_put_the_json_last(tmp_path):
    plan = OutputPlan(OutputOptions(Path("out"), save_probabilities=True))
    assert plan.paths_for(Path("trip/day1/img.jpg")) == {
        "label": Path("out/trip/day1/img.png"), "overlay": Path("out/trip/day1/img_overlay.png"),
        "probs": Path("out/trip/day1/img_probs.npz"), "json": Path("out/trip/day1/img.json"),
    }
    without_overlay = OutputPlan(OutputOptions(Path("out"), write_overlay=False))
    assert list(without_overlay.paths_for(Path("x.jpg"))) == ["label", "json"]
    with pytest.raises(ValueError):
        plan.paths_for(Path("../escape.jpg"))


@pytest.mark.parametrize("first, second, shared", [
    ("x.jpg", "x.png", "x.png"), ("cat.jpg", "cat_overlay.jpg", "cat_overlay.png"),
])
def test_outputs_sharing_a_name_are_refused(tmp_path, first, second, shared):
    plan = OutputPlan(OutputOptions(tmp_path / "out", overwrite=True))
    with pytest.raises(OutputError, match=rf"{first} and .*{second} would both write .*/{shared}: rename one"):
        plan.prepare([source(tmp_path, first), source(tmp_path, second)])


def test_an_output_never_replaces_an_input(tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "dog.png")
    for flags in ({}, {"overwrite": True}, {"skip_existing": True}):
        plan = OutputPlan(OutputOptions(tmp_path, **flags))
        with pytest.raises(OutputError, match=r"dog\.png is an input of this run, and the label output of dog\.png "
                                              r"would replace it: write the outputs to another folder$"):
            plan.prepare([source(tmp_path, "dog.png")])


def test_a_fresh_folder_plans_every_image(tmp_path):
    sources = [source(tmp_path, "a.jpg"), source(tmp_path, "sub/b.jpg")]
    run = OutputPlan(OutputOptions(tmp_path / "out")).prepare(sources)
    assert [item.source for item in run.todo] == sources and not run.skipped and not run.failed
    assert not any(item.replace for item in run.todo)


def test_existing_outputs_need_a_flag_and_the_error_counts_them(tmp_path):
    options = OutputOptions(tmp_path / "out")
    sources = [source(tmp_path, name) for name in ("a.jpg", "b.jpg", "c.jpg")]
    plan = OutputPlan(options)
    write_set(plan, sources[0])
    write_set(plan, sources[2])
    with pytest.raises(OutputError) as error:
        plan.prepare(sources)
    assert str(error.value) == (
        f"{tmp_path / 'out'} already holds the outputs of 2 of 3 images (e.g. {tmp_path / 'out' / 'a.png'}): "
        "neither overwrite nor skip_existing is set")
    assert error.value.hint == "pass --overwrite to replace them, or --skip-existing to keep them and segment the rest"


def test_skip_existing_keeps_complete_sets_and_redoes_incomplete_ones(tmp_path):
    sources = [source(tmp_path, name) for name in ("a.jpg", "b.jpg", "c.jpg")]
    plan = OutputPlan(OutputOptions(tmp_path / "out", skip_existing=True))
    for item in sources[:2]:
        write_set(plan, item)
    (tmp_path / "out" / "b.json").unlink()  # a label without its JSON: incomplete
    run = plan.prepare(sources)
    assert run.skipped == [sources[0]]
    assert [(item.source, item.replace) for item in run.todo] == [(sources[1], True), (sources[2], False)]


def test_empty_files_make_a_set_incomplete_and_are_replaced(tmp_path):
    """What a power failure can leave of a new set (written without fsync): empty files."""
    item = source(tmp_path, "a.jpg")
    plan = OutputPlan(OutputOptions(tmp_path / "out", skip_existing=True))
    write_set(plan, item)
    (tmp_path / "out" / "a.json").write_bytes(b"")
    run = plan.prepare([item])
    assert [(planned.source, planned.replace) for planned in run.todo] == [(item, True)] and not run.failed


def test_overwrite_replaces_only_files_segcli_wrote(tmp_path):
    sources = [source(tmp_path, "a.jpg"), source(tmp_path, "b.jpg")]
    plan = OutputPlan(OutputOptions(tmp_path / "out", overwrite=True))
    write_set(plan, sources[0])
    (tmp_path / "out" / "b.png").parent.mkdir(exist_ok=True)
    Image.new("RGB", (2, 2)).save(tmp_path / "out" / "b.png")  # the user's own picture
    run = plan.prepare(sources)
    assert [(item.source, item.replace) for item in run.todo] == [(sources[0], True)]
    reason = f"{tmp_path / 'out' / 'b.png'} exists and was not written by segcli: not replaced"
    assert run.failed == [(sources[1], Refusal(reason, hint="move it or choose another --out"))]
    assert str(run.failed[0][1]) == reason  # what a library caller reads: no command-line flag
    assert with_hint(run.failed[0][1]) == f"{reason}; move it or choose another --out"  # the CLI's failed: line


def test_a_folder_where_an_output_should_be_fails_that_image(tmp_path):
    (tmp_path / "out" / "a_overlay.png").mkdir(parents=True)
    run = OutputPlan(OutputOptions(tmp_path / "out")).prepare([source(tmp_path, "a.jpg")])
    refusal = run.failed[0][1]
    assert refusal.reason.endswith("a_overlay.png exists and is not a regular file: not replaced")
    assert refusal.hint == "move it or choose another --out" and "--" not in str(refusal)


def test_paths_that_cannot_be_checked_fail_their_image_only(tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_lstat = os.lstat

    def refusing(path, *args, **kwargs):
        if "shut" in os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", refusing)
    sources = [source(tmp_path, "shut/a.jpg"), source(tmp_path, "open/b.jpg"), source(tmp_path, "x" * 250 + ".jpg")]
    run = OutputPlan(OutputOptions(out)).prepare(sources)
    assert [item.source for item in run.todo] == [sources[1]]
    assert run.failed[0] == (sources[0], Refusal(f"cannot write {out / 'shut' / 'a.png'}: Permission denied"))
    assert run.failed[1][0] == sources[2] and run.failed[1][1].reason.endswith("_overlay.png: File name too long")


def test_an_output_folder_that_is_a_file_or_cannot_be_used_is_one_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"output folder .*file is a file$"):
        OutputPlan(OutputOptions(tmp_path / "file")).prepare([source(tmp_path, "a.jpg")])
    with pytest.raises(OutputError, match=r"cannot use output folder .*: File name too long"):
        OutputPlan(OutputOptions(tmp_path / ("o" * 300))).prepare([source(tmp_path, "a.jpg")])
    with pytest.raises(OutputError, match="exclude each other"):
        OutputPlan(OutputOptions(tmp_path, overwrite=True, skip_existing=True))


def test_names_in_plan_errors_are_escaped(tmp_path):
    plan = OutputPlan(OutputOptions(tmp_path / "out"))
    with pytest.raises(OutputError) as error:
        plan.prepare([source(tmp_path, "x\n.jpg"), source(tmp_path, "x\n.png")])
    assert "\n" not in str(error.value) and "x\\n.jpg" in str(error.value)


def test_a_linked_folder_inside_out_that_leads_outside_it_is_refused(tmp_path):
    """out/trip -> elsewhere/: outputs of trip/*.jpg would land outside --out, among files segcli never owned."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "trip")
    for flags in ({}, {"overwrite": True}, {"skip_existing": True}):
        plan = OutputPlan(OutputOptions(tmp_path / "out", **flags))
        with pytest.raises(OutputError, match=r"out/trip leads to .*elsewhere, outside the output folder .*out: "
                                              r"segcli writes only inside the output folder$") as caught:
            plan.prepare([source(tmp_path / "in", "a.jpg"), source(tmp_path / "in", "trip/b.jpg")])
        assert caught.value.hint == "remove the link or choose another --out"
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_linked_out_folder_and_links_that_stay_inside_it_are_used(tmp_path):
    (tmp_path / "real-out" / "2024").mkdir(parents=True)
    os.symlink(tmp_path / "real-out", tmp_path / "out")            # --out itself a link: the user's choice
    os.symlink(tmp_path / "real-out" / "2024", tmp_path / "real-out" / "trip")  # inside it
    plan = OutputPlan(OutputOptions(tmp_path / "out"))
    run = plan.prepare([source(tmp_path / "in", "trip/b.jpg")])
    assert [item.source.relative for item in run.todo] == [Path("trip/b.jpg")]


def test_the_overlay_and_probability_flags_follow_the_outputs_list():
    with_probs = OutputOptions(Path("out"), outputs=("label", "probs", "json"))
    assert (with_probs.save_probabilities, with_probs.write_overlay) == (True, False)
    with_overlay = OutputOptions(Path("out"), save_probabilities=True, write_overlay=False,
                                 outputs=("label", "overlay", "json"))
    assert (with_overlay.save_probabilities, with_overlay.write_overlay) == (False, True)


def test_unknown_or_no_outputs_are_named_with_the_choices():
    from segcli.outputs.kinds import KINDS

    choices = ", ".join(KINDS)
    with pytest.raises(OutputError) as raised:
        OutputOptions(Path("out"), outputs=("label", "zz", "aa"))
    assert str(raised.value) == f"unknown outputs aa, zz: choose from {choices}"
    with pytest.raises(OutputError) as raised:
        OutputOptions(Path("out"), outputs=())
    assert str(raised.value) == f"unknown outputs (none given): choose from {choices}"


def _set_with_summary(tmp_path: Path, **summary_changes) -> ImageSource:
    """A complete set of x.jpg under tmp_path/out whose JSON summary is edited as given (None: key removed)."""
    import json

    item = source(tmp_path / "in", "x.jpg")
    write_set(OutputPlan(OutputOptions(tmp_path / "out")), item)
    summary_path = tmp_path / "out" / "x.json"
    summary = json.loads(summary_path.read_text())
    for key, value in summary_changes.items():
        summary.pop(key, None) if value is None else summary.__setitem__(key, value)
    summary_path.write_text(json.dumps(summary))
    return item


def _refusal(tmp_path: Path, item: ImageSource, **options) -> str:
    plan = OutputPlan(OutputOptions(tmp_path / "out", skip_existing=True, **options))
    with pytest.raises(OutputError) as raised:
        plan.prepare([item])
    return with_hint(raised.value)  # as the command line prints it


def test_skip_existing_names_the_first_three_settings_that_differ(tmp_path):
    recorded = {"a": 1, "b": [1, 2], "c": "x", "d": None, "only_recorded": True}
    item = _set_with_summary(tmp_path, settings=recorded)
    wanted = {"a": 2, "b": (1, 2), "c": "y", "d": 0}  # b equal once as JSON; d and only_recorded differ too
    message = _refusal(tmp_path, item, settings=wanted)
    assert ': a 1, this run 2, c "x", this run "y", d null, this run 0); --skip-existing keeps' in message
    same = OutputPlan(OutputOptions(tmp_path / "out", skip_existing=True, settings=recorded))
    assert same.prepare([item]).skipped == [item]
    dropped = _refusal(tmp_path, item, settings={"a": 1, "b": [1, 2], "c": "x", "d": None})
    assert ": only_recorded true, this run null);" in dropped  # a setting only the old set has counts too


def test_skip_existing_compares_the_checkpoint_alone_or_the_settings_alone(tmp_path):
    item = _set_with_summary(tmp_path, settings={"a": 1})
    assert ": checkpoint c (s), this run other (s));" in _refusal(tmp_path, item, checkpoint=("other", "s"))
    plan = OutputPlan(OutputOptions(tmp_path / "out", skip_existing=True, checkpoint=("c", "s")))
    assert plan.prepare([item]).skipped == [item]  # the same checkpoint, and no settings to compare
    assert ": a 1, this run 2);" in _refusal(tmp_path, item, settings={"a": 2})

