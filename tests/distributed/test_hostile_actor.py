"""SegmentActor without Ray on hostile files: each one is a `failed` row of its own and the batch goes on
(an exception escaping the loader would fail the whole Ray Data batch, and with it the run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from robustness_support import random_rgb
from segcli.distributed.actor import FAILED, OK, SegmentActor, WriteSettings, planned_row
from segcli.distributed.settings import EngineSettings
from segcli.inference_options import InferenceOptions
from segcli.inputs import scan_inputs
from segcli.outputs.plan import OutputOptions
from segcli.pipeline.run import FolderRun
from test_hostile_images import dds_bytes, encoded, tiff_with_a_broken_second_page


def actor_rows(folder: Path, out: Path, checkpoint: Path) -> dict[str, list]:
    """Plan as `predict` does, then hand every planned image to one actor in one call (one Ray Data batch)."""
    run = FolderRun(OutputOptions(out_dir=out), scan_inputs([str(folder)], exclude=[out]).sources)
    settings = EngineSettings.resolve("lraspp", str(checkpoint), device="cpu",
                                      options=InferenceOptions(precision="fp32"))
    actor = SegmentActor(settings, WriteSettings())
    rows = [planned_row(item) for item in run.work.todo]
    return actor({name: np.array([row[name] for row in rows]) for name in ("path", "outputs", "replace")})


def test_hostile_files_are_one_failed_row_each_and_the_batch_goes_on(tmp_path, checkpoint):
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(random_rgb(24, 32)).save(images / "a.png")
    (images / "b.png").write_bytes(dds_bytes())
    (images / "c.jpg").write_bytes(encoded(Image.new("RGB", (8, 8)), "EPS"))
    (images / "d.tif").write_bytes(tiff_with_a_broken_second_page())
    Image.fromarray(random_rgb(24, 32, seed=1)).save(images / "e.png")
    results = actor_rows(images, tmp_path / "out", checkpoint)
    statuses = dict(zip((Path(path).name for path in results["path"]), results["status"]))
    assert statuses == {"a.png": OK, "b.png": FAILED, "c.jpg": FAILED, "d.tif": FAILED, "e.png": OK}
    messages = dict(zip((Path(path).name for path in results["path"]), results["message"]))
    assert "not a supported format" in messages["b.png"] and "not a supported format" in messages["c.jpg"]
    assert "cannot decode image" in messages["d.tif"]
