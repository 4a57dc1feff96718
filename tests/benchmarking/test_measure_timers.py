"""segcli.benchmarking.measure's timers, which `segcli benchmark` and the scripts in benchmarks/ share."""

from __future__ import annotations

import time

from segcli.benchmarking.measure import time_call, time_calls


def test_time_call_gives_wall_and_cpu_time_and_the_result():
    events = []
    sleeping = time_call(lambda: (time.sleep(0.05), "slept")[1], synchronize=lambda: events.append("sync"))
    assert sleeping.result == "slept"
    assert sleeping.wall_ms >= 50.0
    assert sleeping.cpu_ms < 0.5 * sleeping.wall_ms  # asleep, the process uses next to no CPU time
    assert events == ["sync", "sync"]  # the device is synchronised before and after the timed call

    def spin() -> int:
        until, count = time.process_time() + 0.05, 0
        while time.process_time() < until:
            count += 1
        return count

    busy = time_call(spin)
    assert busy.result > 0 and busy.cpu_ms >= 50.0


def test_time_calls_discards_warmup_and_times_each_call():
    calls = []

    def call():
        calls.append(time.perf_counter())
        time.sleep(0.01)

    samples = time_calls(call, warmup=2, iters=3, synchronize=lambda: None)
    assert len(calls) == 5 and len(samples) == 3
    assert all(sample >= 10.0 for sample in samples)
