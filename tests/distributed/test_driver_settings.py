"""`predict --engine ray` from the command line to the actors, without Ray: the driver's own path.

The CLI parses the options, plans the run and calls `run_on_ray`, which builds the actors' settings
(`WriteSettings`, `EngineSettings`) from them; only Ray itself is replaced - its module by a stand-in
(an instance "already running") and the Ray Data pipeline by the same `SegmentActor` called in this
process on the rows the driver planned. The files must be the local engine's, for options (`--classes`,
`--outputs`, `--alpha`, `--max-pixels`) that the actors only see through the driver.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segcli.distributed.run as driver
from robustness_support import random_rgb, run_predict
from segcli.distributed.actor import SegmentActor, planned_row


class StandInRay:
    """What the driver uses of the `ray` module when an instance is already running."""

    class exceptions:
        class RayError(Exception):
            pass

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 2.0}


class InProcessDataset:
    def __init__(self, rows, engine, settings, batch):
        self.rows, self.engine, self.settings, self.batch = rows, engine, settings, batch

    def iter_rows(self):
        actor = SegmentActor(self.engine, self.settings)
        for start in range(0, len(self.rows), self.batch):
            part = self.rows[start:start + self.batch]
            columns = {name: np.array([row[name] for row in part]) for name in ("path", "outputs", "replace")}
            out = actor(columns)
            for index in range(len(part)):
                yield {name: values[index] for name, values in out.items()}


@pytest.fixture
def without_ray(monkeypatch):
    seen = {}

    def dataset(ray, run, engine, settings, cluster, workers):
        seen.update(engine=engine, settings=settings, workers=workers)
        return InProcessDataset([planned_row(item) for item in run.work.todo], engine, settings,
                                cluster.images_per_call())

    monkeypatch.setattr(driver, "import_ray", StandInRay)
    monkeypatch.setattr(driver, "segmentation_dataset", dataset)
    return seen


@pytest.fixture
def folder(tmp_path) -> Path:
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(3)
    for index in range(3):
        pixels = random_rgb(40, 48, seed=index)
        pixels[:, : 16 + 8 * index] = rng.integers(0, 40, 3)  # a flat band: more than one class present
        Image.fromarray(pixels).save(images / f"img{index}.png")
    return images


def classes_present(out: Path) -> set[int]:
    """The classes the JSON summaries list as present (the tiny random model may predict only one)."""
    import json

    return {entry["index"] for path in out.glob("*.json") for entry in json.loads(path.read_text())["classes_present"]}


@pytest.mark.parametrize("extra", [
    ("--outputs", "label,masks,cutout,json", "--classes", "0,1"),
    ("--outputs", "label,masks,json", "--classes", "0"),
    ("--alpha", "0.2", "--max-pixels", "1000000"),
])
def test_the_driver_hands_the_cli_options_to_the_actors(tmp_path, folder, checkpoint, without_ray,
                                                        assert_same_outputs, extra):
    local = run_predict([folder], tmp_path / "local", checkpoint, *extra)
    assert local.exit_code == 0, local.output + local.stderr
    ray = run_predict([folder], tmp_path / "ray", checkpoint, "--engine", "ray", "--ray-workers", "1", *extra)
    assert ray.exit_code == 0, ray.output + ray.stderr
    assert "on Ray: 1 worker" in ray.stderr and without_ray["settings"] is not None
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    if "--classes" in extra:
        kept = {int(index) for index in extra[extra.index("--classes") + 1].split(",")}
        assert without_ray["settings"].classes == tuple(sorted(kept))
        assert classes_present(tmp_path / "ray") - kept  # the images hold a class --classes drops
