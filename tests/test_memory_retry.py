"""run_with_oom_retry: halve the tile / batch size on out-of-memory, then give a clear error."""

from __future__ import annotations

import numpy as np
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
    assert "--tile" in caught.value.hint and "--device cpu" in caught.value.hint and "\n" not in message
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


# --- wired into the engine: batches shrink, then a whole image that does not fit goes through tiles ---

class PixelBudgetNet(torch.nn.Module):
    """1x1 convolutions (tiles reproduce the whole image exactly) that run out of 'device memory' when a
    forward pass gets more than `budget` pixels; records the pixels of every pass that ran."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))
        self.budget, self.passes = budget, []

    def forward(self, batch):
        pixels = batch.shape[0] * batch.shape[2] * batch.shape[3]
        if pixels > self.budget:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {pixels} pixels")
        self.passes.append(pixels)
        return self.body(batch)


def _engine(budget: int, **options):
    from engine_support import engine_of
    from segcli.checkpoints.record import CheckpointRecord

    record = CheckpointRecord(name="budget", model="deeplabv1", dataset="test", categories=("a", "b", "c"),
                              filename="budget.safetensors")
    engine = engine_of(PixelBudgetNet(budget), record, **options)
    messages = []
    engine.on_memory_retry = messages.append
    return engine, messages


def _images(count: int, height: int, width: int):
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_engine_halves_the_batch_and_says_so(cache_releases):
    images = _images(4, 40, 40)
    expected = [p.labels for p in _engine(10**9)[0].predict_batch(images)]
    engine, messages = _engine(2 * 40 * 40)
    got = engine.predict_batch(images)
    assert messages == ["out of memory at batch size 4; retrying at 2"]
    assert engine.model.passes == [3200, 3200]
    for labels, prediction in zip(expected, got):
        np.testing.assert_array_equal(prediction.labels, labels)


def test_engine_falls_back_to_smaller_tiles_when_one_image_does_not_fit(cache_releases):
    image = _images(1, 200, 160)[0]
    whole = _engine(10**9)[0].predict(image, return_probabilities=True)
    engine, messages = _engine(60 * 60)   # the whole image (32,000 px) and 4 tiles of 100x100 do not fit
    got = engine.predict(image, return_probabilities=True)
    assert messages == ["out of memory on the whole image; retrying with 100x100 tiles, one at a time",
                        "out of memory at tile size 100; retrying with 50x50 tiles, one at a time"]
    assert max(engine.model.passes) <= 50 * 50 and len(engine.model.passes) > 4
    engine, messages = _engine(100 * 100)  # one 100x100 tile per pass fits
    np.testing.assert_array_equal(engine.predict(image).labels, whole.labels)
    assert messages == ["out of memory on the whole image; retrying with 100x100 tiles, one at a time"]
    assert max(engine.model.passes) == 100 * 100
    np.testing.assert_array_equal(got.labels, whole.labels)
    np.testing.assert_allclose(got.probabilities, whole.probabilities, atol=1e-5)


def test_engine_tiles_shrink_from_the_tile_size_asked_for(cache_releases):
    from segcli.tiling import TilingPolicy

    image = _images(1, 96, 96)[0]
    whole = _engine(10**9)[0].predict(image)
    engine, messages = _engine(40 * 40, tiling=TilingPolicy.parse("64", overlap=0.25))
    got = engine.predict(image)
    assert messages == ["out of memory at tile size 64; retrying with 32x32 tiles, one at a time"]
    np.testing.assert_array_equal(got.labels, whole.labels)


def test_engine_gives_one_clear_error_when_even_the_smallest_tile_does_not_fit(cache_releases):
    engine, _ = _engine(20 * 20)
    with pytest.raises(OutOfDeviceMemoryError, match=r"out of memory even at tile size 32 \(tried 100, 50, 32;"):
        engine.predict(_images(1, 200, 160)[0])
