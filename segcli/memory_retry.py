"""Retry a step with smaller tiles or batches when the accelerator runs out of memory.

    result = run_with_oom_retry(lambda tile: tiled_logits(..., tile_size=tile, ...),
                                sizes=halving_sizes(1024, floor=256), on_retry=warn)

`fn` is called with each size in turn until one fits; between tries the exception (and the
tensors its traceback holds) is dropped and the allocator's cache is emptied. When even the last
size does not fit, an OutOfDeviceMemoryError says what to try instead.
"""

from __future__ import annotations

import gc
from typing import Callable, Sequence, TypeVar

from segcli.errors import DeviceError

T = TypeVar("T")

# RuntimeError texts of allocators that have no dedicated exception class
_OOM_TEXTS = (
    "out of memory",                    # CUDA (older torch), HIP, "MPS backend out of memory"
    "can't allocate memory",            # DefaultCPUAllocator
    "failed to allocate",               # XPU / some backends
)


class OutOfDeviceMemoryError(DeviceError):
    """Even the smallest tile or batch size did not fit in the device's memory."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OutOfMemoryError (CUDA) and the RuntimeErrors MPS and the CPU allocator raise."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in _OOM_TEXTS)


def release_cached_memory() -> None:
    """Collect garbage and hand the allocator's cached blocks back (CUDA and MPS)."""
    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        torch.mps.empty_cache()


def halving_sizes(start: int, floor: int) -> list[int]:
    """[start, start/2, ...] down to `floor` (the floor itself included when it is reached exactly or passed)."""
    if start < 1 or floor < 1:
        raise ValueError(f"sizes must be positive, got start={start}, floor={floor}")
    sizes = [start]
    while sizes[-1] > floor:
        sizes.append(max(floor, sizes[-1] // 2))
    return sizes


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_with_oom_retry(
    fn: Callable[[int], T],
    *,
    sizes: Sequence[int],
    on_retry: Callable[[int, int, str], None] | None = None,
    what: str = "tile size",
    advice: str = "use --tile with a smaller SIZE, --device cpu, or a smaller model",
) -> T:
    """`fn(size)` for the first size in `sizes` that fits in memory.

    On an out-of-memory error the cache is emptied, `on_retry(failed_size, next_size, reason)`
    is told, and the next size is tried. Any other exception propagates unchanged. After the
    last size fails, OutOfDeviceMemoryError names the sizes tried, with `advice` (command-line terms) as its hint.
    """
    if not sizes:
        raise ValueError("run_with_oom_retry needs at least one size")
    reason = ""
    for index, size in enumerate(sizes):
        try:
            return fn(size)
        except (RuntimeError, MemoryError) as exc:
            if not (isinstance(exc, MemoryError) or is_out_of_memory(exc)):
                raise
            reason = _first_line(exc)
        # outside the except block: the exception and the tensors its frames hold are released
        release_cached_memory()
        if index + 1 < len(sizes) and on_retry is not None:
            on_retry(size, sizes[index + 1], reason)
    tried = ", ".join(str(size) for size in sizes)
    raise OutOfDeviceMemoryError(f"out of memory even at {what} {sizes[-1]} (tried {tried}; last error: {reason})",
                                 hint=advice)
