"""On a CUDA GPU: labels taken on the device, the execution policy's trial, and the benchmark's peak memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustness_support import tiny_model, tiny_record

pytestmark = pytest.mark.cuda


def test_labels_from_cuda_logits_equal_the_cpu_ones():
    from segcli.device import labels_to_host, pinned_for

    logits = torch.randint(0, 4, (2, 21, 64, 48)).float()
    on_gpu = labels_to_host(logits.cuda(), np.dtype(np.uint8))
    assert on_gpu.tobytes() == labels_to_host(logits, np.dtype(np.uint8)).tobytes()
    assert pinned_for(logits, torch.device("cuda")).is_pinned()


def test_the_policy_trial_on_cuda_never_picks_a_slower_configuration(tmp_path):
    from segcli.execution_policy import BARE, PolicyCache, PolicyKey, choose_execution

    device = torch.device("cuda")
    model = tiny_model().to(device)
    key = PolicyKey.for_run("tiny", "random", 64, 64, 2, device)
    choice = choose_execution(model, torch.rand(2, 3, 64, 64), device, key, PolicyCache(tmp_path / "p.json"))
    assert BARE.label in choice.timings_ms
    assert choice.timings_ms[choice.candidate.label] <= choice.timings_ms[BARE.label]
    assert torch.cuda.get_device_name(device) in (tmp_path / "p.json").read_text()
    again = choose_execution(model, torch.rand(2, 3, 64, 64), device, key, PolicyCache(tmp_path / "p.json"))
    assert again.from_cache and again.candidate == choice.candidate


def test_folder_run_with_auto_precision_runs_and_reports_the_policys_choice(tmp_path, monkeypatch):
    import json

    from PIL import Image

    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions
    from segcli.inputs import find_images
    from segcli.loaded_model import LoadedModel
    from segcli.outputs.plan import OutputOptions
    from segcli.pipeline.run import FolderRun

    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    (tmp_path / "in").mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in" / f"{index}.png")
    engine = SegmentationEngine.from_checkpoint(LoadedModel(tiny_model(), tiny_record()), device="cuda",
                                                options=InferenceOptions(precision="auto"))
    assert engine.policy is not None  # --precision auto on CUDA: the engine's execution policy decides
    run = FolderRun(OutputOptions(tmp_path / "out"), find_images([tmp_path / "in"]))
    summary = run.execute(engine)
    assert len(summary.written) == 3 and not summary.failed
    assert engine.policy.choices and {choice.key.device_name for choice in engine.policy.choices} == \
        {torch.cuda.get_device_name(engine.plan.device)}
    ran = {json.loads((tmp_path / "out" / f"{index}.json").read_text())["precision"] for index in range(3)}
    assert ran <= {choice.candidate.precision for choice in engine.policy.choices}


def test_an_engine_row_peak_is_the_timed_calls_not_the_autotuner(tmp_path):
    """cuDNN's autotuner once made a 120 MB model read as a 39 GB peak: its trial workspaces, in the warm-up."""
    from segcli.benchmarking.runner import BenchmarkSettings, run_benchmark
    from segcli.benchmarking.measure import measure_calls
    from segcli.benchmarking.subjects import BenchmarkSubject

    subject = BenchmarkSubject("tiny", tiny_model(), tiny_record(), "random")
    settings = BenchmarkSettings(sizes=((256, 256),), device="cuda", precisions=("fp32",), warmup=3, iters=3,
                                 end_to_end=False)
    baseline, _ = run_benchmark([subject], settings).rows
    assert baseline.cudnn_benchmark is False
    model = tiny_model().cuda().to(memory_format=torch.channels_last)
    batch = torch.rand(1, 3, 384, 384, device="cuda").contiguous(memory_format=torch.channels_last)

    def call() -> None:
        with torch.inference_mode():
            model(batch)

    torch.backends.cudnn.benchmark = True  # autotunes this new shape in the warm-up
    try:
        _, tuned = measure_calls(call, 3, 3, torch.cuda.synchronize, torch.device("cuda"))
    finally:
        torch.backends.cudnn.benchmark = False
    _, plain = measure_calls(call, 3, 3, torch.cuda.synchronize, torch.device("cuda"))
    assert tuned.peak_mb < 4 * plain.peak_mb + 256


def test_an_engine_with_an_explicit_precision_leaves_the_autotuner_off():
    """cuDNN's autotuner only where the execution policy measured it to help (`--precision auto`)."""
    from segcli.device import plan_execution
    from segcli.engine import SegmentationEngine
    from segcli.loaded_model import LoadedModel
    from segcli.inference_options import InferenceOptions

    torch.backends.cudnn.benchmark = False
    engine = SegmentationEngine.from_checkpoint(LoadedModel(tiny_model(), tiny_record()), device="cuda",
                                                options=InferenceOptions(precision="fp32"))
    engine.predict(np.zeros((64, 64, 3), dtype=np.uint8))
    assert engine.plan == plan_execution("cuda", "fp32") and torch.backends.cudnn.benchmark is False
