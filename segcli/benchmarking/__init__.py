"""`segcli benchmark` as a library: measure models' speed, memory, FLOPs and accuracy side by side.

    from segcli.benchmarking import BenchmarkSettings, plan_subjects, iter_subjects, run_benchmark
    report = run_benchmark(iter_subjects(plan_subjects(["lraspp"])), BenchmarkSettings(sizes=((256, 256),)))
"""

from segcli.benchmarking.measure import (
    FLOP_CONVENTION, LatencyStats, PeakMemory, count_flops, count_parameters, time_calls,
)
from segcli.benchmarking.runner import (
    BenchmarkReport, BenchmarkRow, BenchmarkSettings, run_benchmark, synthetic_jpeg,
)
from segcli.benchmarking.subjects import (
    RANDOM_WEIGHTS, BenchmarkSubject, PlannedSubject, iter_subjects, plan_subjects, random_record,
)

__all__ = [
    "FLOP_CONVENTION", "LatencyStats", "PeakMemory", "count_flops", "count_parameters", "time_calls",
    "BenchmarkReport", "BenchmarkRow", "BenchmarkSettings", "run_benchmark", "synthetic_jpeg",
    "RANDOM_WEIGHTS", "BenchmarkSubject", "PlannedSubject", "iter_subjects", "plan_subjects", "random_record",
]
