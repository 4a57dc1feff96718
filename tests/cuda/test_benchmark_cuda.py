"""`segcli benchmark` on a CUDA GPU: timings wait for the GPU, peak memory is the GPU's and resets per row."""

from __future__ import annotations

import pytest
import torch

from segcli.benchmarking.measure import PeakMemory, time_calls
from segcli.benchmarking.runner import BenchmarkSettings, run_benchmark
from segcli.benchmarking.subjects import iter_subjects, plan_subjects
from segcli.device import plan_execution

pytestmark = pytest.mark.cuda


def test_timed_calls_include_the_gpu_work_they_launch():
    plan = plan_execution("cuda", "bf16")
    left = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    right = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)

    def call() -> None:
        for _ in range(4):
            left @ right  # queued: returns long before the GPU is done

    samples = time_calls(call, warmup=2, iters=5, synchronize=plan.synchronize)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call()
    end.record()
    end.synchronize()
    on_gpu_ms = start.elapsed_time(end)
    print(f"time_calls median {sorted(samples)[2]:.3f} ms, CUDA events {on_gpu_ms:.3f} ms")
    assert sorted(samples)[2] >= 0.8 * on_gpu_ms


def test_peak_memory_is_the_gpus_and_resets_for_each_measurement():
    device = torch.device("cuda")
    with PeakMemory(device) as large:
        block = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
        del block
    with PeakMemory(device) as small:
        block = torch.empty(16 * 2**20, dtype=torch.uint8, device=device)
        del block
    assert large.method == small.method == "cuda max_memory_allocated"
    assert large.peak_mb >= 256 and small.peak_mb < 200


def test_benchmark_rows_on_cuda_report_gpu_memory_and_consistent_latency():
    settings = BenchmarkSettings(sizes=((256, 256),), device="cuda", precisions=("fp32", "bf16"), warmup=3, iters=20,
                                 e2e_iters=3)
    report = run_benchmark(iter_subjects(plan_subjects(["lraspp"])), settings)
    assert [(row.variant, row.precision) for row in report.rows] == [("baseline", "fp32"), ("engine", "fp32"),
                                                                     ("engine", "bf16")]
    for row in report.rows:
        assert row.device.startswith("cuda") and row.memory_method == "cuda max_memory_allocated"
        assert row.peak_memory_mb and row.peak_memory_mb > 1
        assert 0 < row.min_ms <= row.p50_ms <= row.p95_ms <= row.max_ms
        assert row.images_per_s == pytest.approx(1000.0 / row.mean_ms, rel=1e-6)
    engine_fp32 = report.rows[1]
    assert engine_fp32.e2e_mean_ms is not None and engine_fp32.e2e_mean_ms >= engine_fp32.forward_ms
