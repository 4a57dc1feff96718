"""SegmentActor without Ray: the rows a Ray Data batch holds, run in this process, against the local engine's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustness_support import random_rgb, run_predict
from segcli.distributed.actor import FAILED, OK, SegmentActor, WriteSettings, planned_row
from segcli.distributed.settings import EngineSettings
from segcli.inputs import scan_inputs
from segcli.outputs.plan import OutputOptions
from segcli.pipeline.run import FolderRun


@pytest.fixture
def folder(tmp_path) -> Path:
    images = tmp_path / "in"
    for index, (height, width) in enumerate([(32, 40), (32, 40), (24, 48)]):
        path = images / ("sub" if index == 1 else "") / f"img{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_rgb(height, width, seed=index)).save(path)
    (images / "broken.jpg").write_bytes(b"not an image")
    return images


def actor_run(folder: Path, out: Path, checkpoint: Path, batch: int, crf=None, **choice) -> dict[str, list]:
    """Plan as `predict` does, then hand every planned image to one actor in calls of `batch` rows."""
    run = FolderRun(OutputOptions(out_dir=out, **choice), scan_inputs([str(folder)], exclude=[out]).sources)
    from segcli.inference_options import InferenceOptions

    settings = EngineSettings.resolve("lraspp", str(checkpoint), device="cpu",
                                      options=InferenceOptions(precision="fp32", crf=crf))
    actor = SegmentActor(settings, WriteSettings(classes=run.options.classes))
    rows = [planned_row(item) for item in run.work.todo]
    results: dict[str, list] = {"path": [], "status": [], "message": [], "timings": []}
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        columns = {name: np.array([row[name] for row in part]) for name in ("path", "outputs", "replace")}
        for name, values in actor(columns).items():
            results[name].extend(values)
    return results


@pytest.mark.parametrize("batch", [1, 3])
def test_actor_writes_the_local_engines_files_and_names_the_failure(tmp_path, folder, checkpoint, batch,
                                                                    assert_same_outputs):
    local = run_predict([folder], tmp_path / "local", checkpoint)
    assert local.exit_code == 1, local.output
    results = actor_run(folder, tmp_path / "actor", checkpoint, batch)
    statuses = dict(zip(results["path"], results["status"]))
    assert statuses == {str(folder / "img0.png"): OK, str(folder / "sub" / "img1.png"): OK,
                        str(folder / "img2.png"): OK, str(folder / "broken.jpg"): FAILED}
    message = results["message"][results["path"].index(str(folder / "broken.jpg"))]
    assert str(folder / "broken.jpg") in message and message in local.stderr
    assert_same_outputs(tmp_path / "local", tmp_path / "actor", ignore=("settings",))


def test_actor_with_crf_matches_the_local_crf(tmp_path, folder, checkpoint, assert_same_outputs):
    from segcli.crf import CRFSettings, crf_available

    if not crf_available():
        pytest.skip("pydensecrf is not installed")
    assert run_predict([folder], tmp_path / "local", checkpoint, "--crf").exit_code == 1
    results = actor_run(folder, tmp_path / "actor", checkpoint, batch=2, crf=CRFSettings())
    assert results["status"].count(OK) == 3
    assert_same_outputs(tmp_path / "local", tmp_path / "actor", ignore=("settings",))


def test_actor_writes_the_chosen_outputs_for_the_chosen_classes(tmp_path, folder, checkpoint, assert_same_outputs):
    """--outputs and --classes reach the actors: masks and cut-outs of the kept classes only, as locally."""
    from segcli.checkpoints.resolve import resolve_checkpoint

    categories = tuple(resolve_checkpoint("lraspp", str(checkpoint)).record.categories)
    local = run_predict([folder], tmp_path / "local", checkpoint, "--outputs", "label,masks,cutout,json",
                        "--classes", categories[0])
    assert local.exit_code == 1, local.output
    results = actor_run(folder, tmp_path / "actor", checkpoint, batch=2, outputs=("label", "masks", "cutout", "json"),
                        classes=(0,), categories=categories)
    assert results["status"].count(OK) == 3
    assert sorted(p.name for p in (tmp_path / "actor").rglob("*_cutout.png"))  # the chosen kinds were written
    assert_same_outputs(tmp_path / "local", tmp_path / "actor", ignore=("settings",))


def test_a_block_ray_retries_counts_the_sets_this_run_completed_as_segmented(tmp_path, folder, checkpoint):
    """An actor killed mid-block: Ray reruns the block on a new actor, whose rows' sets are already complete."""
    import time

    from segcli.inference_options import InferenceOptions

    out = tmp_path / "out"
    run = FolderRun(OutputOptions(out_dir=out), scan_inputs([str(folder)], exclude=[out]).sources)
    settings = EngineSettings.resolve("lraspp", str(checkpoint), device="cpu", options=InferenceOptions(precision="fp32"))
    rows = [planned_row(item) for item in run.work.todo]
    columns = {name: np.array([row[name] for row in rows]) for name in ("path", "outputs", "replace")}
    started = time.time() - 1.0
    first = SegmentActor(settings, WriteSettings(run_started=started))(columns)
    assert first["status"].count(OK) == 3
    kept = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    retried = SegmentActor(settings, WriteSettings(run_started=started))(columns)  # the same block again
    assert dict(zip(retried["path"], retried["status"])) == dict(zip(first["path"], first["status"]))
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # nothing rewritten
    # sets from before this run are not this run's: without --overwrite/--skip-existing they stay refused
    later = SegmentActor(settings, WriteSettings(run_started=time.time() + 60))(columns)
    assert later["status"].count(FAILED) == 4
