"""`--precision auto` on CUDA: the execution policy's trial on the first image, then the whole folder in its choice.

The policy takes the device as an argument, so these run on the CPU with `policy_applies` forced.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import segcli.pipeline.tuning
from robustness_support import tiny_model, tiny_record
from segcli.device import plan_execution
from segcli.engine import SegmentationEngine
from segcli.execution_policy import BARE, Candidate
from segcli.inference_options import InferenceOptions
from segcli.inputs import find_images
from segcli.outputs.plan import OutputOptions
from segcli.pipeline.run import FolderRun
from segcli.pipeline.scheduler import Schedule
from segcli.pipeline.tuning import policy_applies, tune_engine

CL = Candidate("fp32", channels_last=True)


def _engine(precision: str = "auto") -> SegmentationEngine:
    return SegmentationEngine(tiny_model(), tiny_record(), plan_execution("cpu", "fp32", channels_last=False),
                              options=InferenceOptions(precision=precision))


def _timer(times):
    def timer(candidate, call, plan):
        call()
        return times[candidate]
    return timer


def test_only_auto_precision_on_cuda_is_tuned():
    engine = _engine("auto")
    assert not policy_applies(engine)  # CPU
    engine.plan = replace(engine.plan, device=torch.device("cuda"))
    assert policy_applies(engine)
    engine.options = replace(engine.options, precision="bf16")
    assert not policy_applies(engine)  # an explicit --precision wins


def test_the_engine_runs_in_the_chosen_configuration_with_the_same_labels(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    engine = _engine()
    before = engine.predict(image).labels
    choice = tune_engine(engine, image, batch_size=2, cache=segcli.pipeline.tuning.PolicyCache(tmp_path / "p.json"),
                         timer=_timer({BARE: 9.0, CL: 3.0}), candidates=[BARE, CL])
    assert choice.candidate == CL
    assert engine.plan.channels_last and engine.plan.precision == "fp32"
    entry = next(iter(json.loads((tmp_path / "p.json").read_text())["entries"]))
    assert json.loads(entry)["height"] == 40 and json.loads(entry)["batch"] == 2
    np.testing.assert_array_equal(engine.predict(image).labels, before)


@pytest.mark.slow
def test_a_folder_run_tunes_once_on_its_first_image(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(segcli.pipeline.tuning, "policy_applies", lambda engine: True)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, size=(36, 36, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    run = FolderRun(OutputOptions(tmp_path / "out"), find_images([folder]))
    summary = run.execute(_engine(), schedule=Schedule(batch_size=2))
    assert len(summary.written) == 3 and not summary.failed
    assert run.tuning is not None and not run.tuning.from_cache and BARE.label in run.tuning.timings_ms
    cache = json.loads((tmp_path / "home" / "execution-policy.json").read_text())
    assert [json.loads(key)["batch"] for key in cache["entries"]] == [2]
