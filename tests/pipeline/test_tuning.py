"""A folder run with `--precision auto` on CUDA: the engine's execution policy chooses on the first batch of each
(size, batch), the lanes run in that choice and every image's JSON says what it ran in (no folder-run special
case: the policy lives in the engine). Forced on the CPU here (tests/policy_support.py)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from engine_support import engine_of
from policy_support import force_policy
from robustness_support import tiny_model, tiny_record
from segcli.inputs import find_images
from segcli.outputs.plan import OutputOptions
from segcli.pipeline.run import FolderRun
from segcli.pipeline.scheduler import Schedule


def test_a_folder_run_runs_and_reports_the_engines_choice(tmp_path, monkeypatch):
    trials = force_policy(monkeypatch, tmp_path / "home")
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, size=(36, 36, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    engine = engine_of(tiny_model(), tiny_record(), precision="auto", channels_last=None)
    run = FolderRun(OutputOptions(tmp_path / "out"), find_images([folder]))
    summary = run.execute(engine, schedule=Schedule(batch_size=3))
    assert len(summary.written) == 3 and not summary.failed
    assert trials.shapes == [(3, 3, 36, 36)] and trials.forwards == ["fp32 CL"]  # one trial, one batch as chosen
    cache = json.loads((tmp_path / "home" / "execution-policy.json").read_text())
    assert [json.loads(key)["batch"] for key in cache["entries"]] == [3]
    for index in range(3):
        written = json.loads((tmp_path / "out" / f"{index}.json").read_text())
        assert (written["precision"], written["memory_format"]) == ("fp32", "channels_last")
