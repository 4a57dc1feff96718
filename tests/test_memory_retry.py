"""run_with_oom_retry: halve the tile / batch size on out-of-memory, then give a clear error."""

from __future__ import annotations

import pytest
import torch

import segcli.memory_retry as memory_retry
from segcli.errors import DeviceError, SegcliError
from segcli.memory_retry import (OutOfDeviceMemoryError, halving_sizes, is_out_of_memory, run_with_oom_retry)


class FakeDevice:
    """fn(size): raises torch.cuda.OutOfMemoryError above `fits_at`, else returns size * 10."""

    def __init__(self, fits_at: int, error=None) -> None:
        self.fits_at, self.calls = fits_at, []
        self.error = error or (lambda size: torch.cuda.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate {size} MiB\nmore detail on a second line"))

    def __call__(self, size: int) -> int:
        self.calls.append(size)
        if size > self.fits_at:
            raise self.error(size)
        return size * 10


@pytest.fixture
def cache_releases(monkeypatch):
    released = []
    monkeypatch.setattr(memory_retry, "release_cached_memory", lambda: released.append(True))
    return released


def test_the_cuda_oom_class_exists_on_cpu_builds_and_is_a_runtime_error():
    assert issubclass(torch.cuda.OutOfMemoryError, RuntimeError)
    assert torch.cuda.OutOfMemoryError is torch.OutOfMemoryError


def test_halving_sizes():
    assert halving_sizes(1024, floor=256) == [1024, 512, 256]
    assert halving_sizes(1000, floor=256) == [1000, 500, 256]
    assert halving_sizes(8, floor=1) == [8, 4, 2, 1]
    assert halving_sizes(128, floor=256) == [128]
    with pytest.raises(ValueError):
        halving_sizes(0, floor=1)


def test_halves_until_it_fits_and_reports_each_retry(cache_releases):
    device = FakeDevice(fits_at=300)
    retries = []
    result = run_with_oom_retry(device, sizes=halving_sizes(1024, 128),
                                on_retry=lambda failed, nxt, why: retries.append((failed, nxt, why)))
    assert result == 2560 and device.calls == [1024, 512, 256]
    assert retries == [(1024, 512, "CUDA out of memory. Tried to allocate 1024 MiB"),
                       (512, 256, "CUDA out of memory. Tried to allocate 512 MiB")]
    assert len(cache_releases) == 2


def test_first_size_that_fits_means_one_call_and_no_retry(cache_releases):
    device = FakeDevice(fits_at=4096)
    assert run_with_oom_retry(device, sizes=[1024, 512], on_retry=pytest.fail) == 10240
    assert device.calls == [1024] and cache_releases == []


def test_below_the_floor_raises_a_segcli_error_saying_what_to_try(cache_releases):
    device = FakeDevice(fits_at=100)
    with pytest.raises(OutOfDeviceMemoryError) as caught:
        run_with_oom_retry(device, sizes=[1024, 512, 256], what="tile size")
    message = str(caught.value)
    assert isinstance(caught.value, DeviceError) and isinstance(caught.value, SegcliError)
    assert "out of memory even at tile size 256 (tried 1024, 512, 256" in message
    assert "--tile" in message and "--device cpu" in message and "\n" not in message
    assert device.calls == [1024, 512, 256] and len(cache_releases) == 3


@pytest.mark.parametrize("text", ["MPS backend out of memory (MPS allocated: 8.00 GB)",
                                  "[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"])
def test_mps_and_cpu_allocator_runtime_errors_count_as_oom(cache_releases, text):
    device = FakeDevice(fits_at=4, error=lambda size: RuntimeError(text))
    assert run_with_oom_retry(device, sizes=[16, 8, 4], what="batch size") == 40
    assert is_out_of_memory(RuntimeError(text))


def test_other_errors_propagate_unchanged_without_retry(cache_releases):
    device = FakeDevice(fits_at=1, error=lambda size: RuntimeError("Given groups=1, weight of size [8, 3, 3, 3]"))
    with pytest.raises(RuntimeError, match="Given groups=1"):
        run_with_oom_retry(device, sizes=[4, 2, 1], on_retry=pytest.fail)
    assert device.calls == [4] and cache_releases == []
    assert not is_out_of_memory(ValueError("out of memory"))  # only RuntimeErrors carry allocator texts


def test_release_cached_memory_creates_no_cuda_context():
    initialized_before = torch.cuda.is_initialized()
    memory_retry.release_cached_memory()
    assert torch.cuda.is_initialized() == initialized_before
