"""Every command that builds an engine gets `--precision auto`'s execution policy from the engine (forced on the CPU
here, tests/policy_support.py: fp32 channels_last timed faster, where the CPU's own auto rule says bf16) and
reports the configuration that ran, not "auto" or the guess made before the first batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import segcli
from policy_support import CL, force_policy
from robustness_support import random_rgb, run_predict, save_image
from segcli.execution_policy import BARE
from segcli.inference_options import InferenceOptions


def test_one_image_through_the_python_api_runs_the_policys_plan(tmp_path, monkeypatch, tiny_checkpoint):
    trials = force_policy(monkeypatch, tmp_path / "home")
    engine = segcli.load("lraspp", weights=str(tiny_checkpoint), device="cpu", options=InferenceOptions())
    prediction = engine.predict(random_rgb(40, 44))
    assert trials.shapes == [(1, 3, 40, 44)] and trials.timed == [BARE, CL]
    assert prediction.plan.text == "fp32 CL" and engine.plan.text == "fp32 CL" and trials.forwards == ["fp32 CL"]


def test_evaluate_reports_the_precision_that_ran(tmp_path, monkeypatch):
    import torch

    from segcli.checkpoints.record import CheckpointRecord
    from segcli.checkpoints.saving import save_segcli_checkpoint
    from segcli.cli.main import cli
    from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
    from segcli.models import build_model

    trials = force_policy(monkeypatch, tmp_path / "home")
    data = tmp_path / "data"
    write_synth_dataset(data, 4, seed=11, size=(40, 40), val_fraction=0.5)
    torch.manual_seed(0)
    record = CheckpointRecord(name="tiny", model="deeplabv1", dataset="segcli-synth", categories=SYNTH_CLASSES,
                              filename="tiny.safetensors", model_kwargs=(("width", 0.0625),))
    weights = save_segcli_checkpoint(tmp_path / "tiny.safetensors",
                                     build_model("deeplabv1", len(SYNTH_CLASSES), width=0.0625), record)
    args = ["evaluate", "--model", "deeplabv1", "--weights", str(weights), "--data", str(data), "--split", "val",
            "--device", "cpu", "--json", "-"]
    done = CliRunner().invoke(cli, args + ["--precision", "auto"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    metrics = json.loads(done.stdout)
    assert (metrics["precision"], metrics["memory_format"]) == ("fp32", "channels_last")
    assert trials.shapes == [(1, 3, 40, 40)] and set(trials.forwards) == {"fp32 CL"}  # 2 images, as chosen
    assert len(trials.forwards) == 2
    explicit = json.loads(CliRunner().invoke(cli, args + ["--precision", "bf16"], catch_exceptions=False).stdout)
    assert explicit["precision"] == "bf16" and trials.shapes == [(1, 3, 40, 40)]


def test_serve_runs_the_policys_plan_and_says_so(tmp_path, monkeypatch, tiny_checkpoint):
    from segcli.engine import SegmentationEngine
    from serve_support import client, png_bytes, post_image

    trials = force_policy(monkeypatch, tmp_path / "home")
    engine = SegmentationEngine.load("lraspp", weights=str(tiny_checkpoint), device="cpu", options=InferenceOptions())
    with client(engine, batch_wait_ms=0) as served:
        before = served.get("/v1/models").json()
        answer = post_image(served, png_bytes(random_rgb(40, 40)), "?output=labels")
        after = served.get("/v1/models").json()
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Segcli-Precision"] == "fp32 CL"
    assert before["precision"] == "auto"  # before the first batch: the policy has not chosen yet
    assert (after["precision"], after["memory_format"]) == ("fp32", "channels_last")
    assert trials.shapes == [(1, 3, 40, 40)] and trials.forwards == ["fp32 CL"]


def test_a_raster_runs_its_tiles_in_the_policys_plan(tmp_path, monkeypatch, tiny_checkpoint):
    pytest.importorskip("rasterio")
    from raster_support import scene, write_raster

    trials = force_policy(monkeypatch, tmp_path / "home")
    path = write_raster(tmp_path / "scene.tif", scene(100, 120, 3))
    done = run_predict([path], tmp_path / "out", tiny_checkpoint, "--precision", "auto", "--tile", "64")
    assert done.exit_code == 0, done.output
    assert trials.shapes and all(shape[-2:] == (64, 64) for shape in trials.shapes)
    assert trials.forwards and set(trials.forwards) == {"fp32 CL"}  # every tile batch in the policy's plan
    assert "execution policy: fp32 CL (measured:" in done.stderr


def test_benchmark_auto_rows_run_and_report_the_policys_plan(tmp_path, monkeypatch):
    from segcli.benchmarking.runner import BenchmarkSettings, run_benchmark
    from segcli.benchmarking.subjects import BenchmarkSubject, random_record
    from robustness_support import tiny_model

    trials = force_policy(monkeypatch, tmp_path / "home")
    settings = BenchmarkSettings(sizes=((32, 32),), device="cpu", precisions=("auto", "bf16"), warmup=1, iters=2,
                                 end_to_end=False, baseline=False)
    report = run_benchmark([BenchmarkSubject("tiny", tiny_model(), random_record("lraspp"), "random")], settings)
    rows = [(row.precision, row.channels_last) for row in report.rows]
    assert rows == [("fp32", True), ("bf16", True)]
    assert trials.shapes == [(1, 3, 32, 32)]
