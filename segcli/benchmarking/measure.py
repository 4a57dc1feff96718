"""Measuring one thing at a time: latency statistics, FLOPs, parameters, peak memory.

Conventions (also written into every JSON report):
- FLOPs come from `torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per
  multiply-add of convolutions and matrix products (elementwise ops, pooling and interpolation
  are not counted). GFLOP = counted FLOPs / 1e9, per image, at the stated input size.
- Latency: device synchronised before and after every timed call; statistics over the timed
  calls only (warm-up calls are run and discarded).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

FLOP_CONVENTION = (
    "torch.utils.flop_counter.FlopCounterMode: 2 FLOPs per multiply-add of conv/matmul ops; "
    "elementwise, pooling and interpolation not counted; GFLOP = FLOPs / 1e9 per image"
)


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of timed calls, in milliseconds."""

    mean_ms: float
    p50_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    count: int
    p10_ms: float = float("nan")
    p90_ms: float = float("nan")

    @property
    def spread(self) -> float:
        """(p90 - p10) / p50: how far apart the timed calls are, relative to the median (0: all alike)."""
        return (self.p90_ms - self.p10_ms) / self.p50_ms if self.p50_ms > 0 else float("nan")

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> "LatencyStats":
        if not samples_ms:
            raise ValueError("no timed samples: iterations must be >= 1")
        values = np.asarray(samples_ms, dtype=np.float64)
        p10, p50, p90, p95 = np.percentile(values, [10, 50, 90, 95])  # linear interpolation: ordered always
        return cls(
            mean_ms=float(values.mean()), p50_ms=float(p50), p95_ms=float(p95),
            min_ms=float(values.min()), max_ms=float(values.max()), std_ms=float(values.std()),
            count=len(samples_ms), p10_ms=float(p10), p90_ms=float(p90),
        )


@dataclass(frozen=True)
class CallTiming:
    """One timed call: wall-clock and this process's CPU time in milliseconds, and what the call returned."""

    wall_ms: float
    cpu_ms: float
    result: Any


def time_call(call: Callable[[], Any], synchronize: Callable[[], None] = lambda: None) -> CallTiming:
    """Time one call, the device synchronised before and after it (`time.perf_counter`, `time.process_time`)."""
    synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    synchronize()
    return CallTiming((time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0, result)


def time_calls(
    call: Callable[[], Any], warmup: int, iters: int, synchronize: Callable[[], None]
) -> list[float]:
    """Run `call` `warmup` times untimed, then `iters` times timed; milliseconds per timed call."""
    for _ in range(warmup):
        call()
    return [time_call(call, synchronize).wall_ms for _ in range(iters)]


def count_parameters(model: nn.Module) -> int:
    """The model's own parameter count (buffers such as BatchNorm statistics not included)."""
    return sum(parameter.numel() for parameter in model.parameters())


def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass on `example`, counted by FlopCounterMode (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(example)
    return int(counter.get_total_flops())


# --- peak memory ---------------------------------------------------------------------------------

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc `malloc_trim`), so reusing them shows as growth."""
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name)
    if hasattr(libc, "malloc_trim"):  # glibc only; musl and macOS have none
        libc.malloc_trim(0)


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    _release_free_heap()
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _ru_maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


class PeakMemory:
    """Peak memory while the `with` block runs, in MiB (`peak_mb`), and how it was measured (`method`).

    CUDA: `torch.cuda.max_memory_allocated` after a reset (tensors held by PyTorch: weights,
    activations, workspaces; not the caching allocator's reserve).
    CPU on Linux: peak RSS growth above the RSS at the start of the block; freed heap memory is
    returned to the OS first (glibc `malloc_trim`) and the peak (VmHWM) is reset through
    /proc/self/clear_refs, so earlier rows neither mask nor inflate later ones. Caches that live
    across calls (oneDNN primitives, memory the allocator keeps) are not counted once warm, so
    this is close to, and at most, what the block adds on top of the loaded model.
    Elsewhere: `ru_maxrss` growth, a process-lifetime high-water mark: 0 whenever an earlier
    row already reached a higher peak.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb: float | None = None
        self.method = "not measured"
        self._start_kib = 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda max_memory_allocated"
        elif self.device.type == "cpu" and _reset_peak_rss():
            self._start_kib = _status_kib("VmRSS") or 0
            self.method = "peak RSS growth (VmHWM reset per row)"
        elif self.device.type == "cpu":
            self._start_kib = _ru_maxrss_kib()
            self.method = "ru_maxrss growth (process high-water mark, lower bound)"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.method.startswith("peak RSS"):
            peak_kib = _status_kib("VmHWM") or self._start_kib
            self.peak_mb = max(0, peak_kib - self._start_kib) / 1024
        elif self.method.startswith("ru_maxrss"):
            self.peak_mb = max(0, _ru_maxrss_kib() - self._start_kib) / 1024


def measure_calls(call: Callable[[], Any], warmup: int, iters: int, synchronize: Callable[[], None],
                  device: torch.device) -> tuple[list[float], "PeakMemory"]:
    """Warm up, then time `iters` calls with the peak memory measured over the timed calls only.

    The warm-up stays outside the measured block: cuDNN's autotuner (`torch.backends.cudnn.benchmark`)
    tries every convolution algorithm on the first calls, each with its own workspace, and those
    allocations once made a 120 MB model read as a 39 GB peak. The peak statistics are reset after it.
    """
    for _ in range(warmup):
        call()
    synchronize()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the autotuner's workspaces go back; the reset below starts from here
    with PeakMemory(device) as memory:
        samples = time_calls(call, 0, iters, synchronize)
    return samples, memory
