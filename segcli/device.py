"""Where and in which precision the model runs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from segcli.errors import DeviceError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")  # plus cuda:N
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable device is an error, not a fallback."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DeviceError("device mps: Apple's MPS backend is not available here",
                              hint="use --device cpu")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name}: no CUDA GPU is visible here",
                              hint="use --device cpu or auto")
        if ":" in name:
            index_text = name.split(":", 1)[1]
            if not index_text.isdigit():
                raise DeviceError(f"device {name}: expected cuda:N with N a GPU index")
            if int(index_text) >= torch.cuda.device_count():
                raise DeviceError(
                    f"device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible"
                )
        return torch.device(name)
    raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo", encoding="ascii", errors="ignore").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto`: bf16 on CUDA with bf16 support (fp16 otherwise) and on CPUs with native bf16; else fp32."""
    name = (name or "auto").lower()
    if name not in PRECISION_CHOICES:
        raise DeviceError(f"unknown precision {name!r}: use one of {', '.join(PRECISION_CHOICES)}")
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_supports_bf16():
            return "bf16"
        return "fp32"
    if name == "fp16" and device.type == "cpu":
        raise DeviceError("precision fp16 is not supported on the CPU; use bf16 or fp32",
                          hint="pass --precision bf16 or fp32")
    return name


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """No TF32 in cuDNN convolutions or cuBLAS matmuls inside; the previous settings come back after.

    torch >= 2.9 refuses to mix its legacy flags (`allow_tf32`) with the new `fp32_precision` ones,
    so this keeps to whichever the process already uses (the legacy ones unless the new were set).
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    try:
        saved = (cudnn.allow_tf32, matmul.allow_tf32)
    except RuntimeError:  # the new API is in use: reading the legacy flags raises
        saved = None
    if saved is not None:
        cudnn.allow_tf32 = matmul.allow_tf32 = False
        try:
            yield
        finally:
            cudnn.allow_tf32, matmul.allow_tf32 = saved
        return
    knobs = (cudnn.conv, cudnn.rnn, matmul)
    previous = [knob.fp32_precision for knob in knobs]
    for knob in knobs:
        knob.fp32_precision = "ieee"
    try:
        yield
    finally:
        for knob, value in zip(knobs, previous):
            knob.fp32_precision = value


def set_cudnn_benchmark(device: torch.device, enabled: bool) -> None:
    """cuDNN's autotuner on or off (a process-wide flag) for a CUDA device; nothing elsewhere."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = enabled


def cudnn_benchmark_state(device: torch.device) -> bool | None:
    """Whether cuDNN's autotuner is on, for a CUDA device (None elsewhere: there is no cuDNN)."""
    return bool(torch.backends.cudnn.benchmark) if device.type == "cuda" else None


@dataclass(frozen=True)
class ExecutionPlan:
    """Device, precision and memory format, decided once per engine."""

    device: torch.device
    precision: str
    channels_last: bool

    @property
    def text(self) -> str:
        """`fp32`, `bf16 CL`: the precision and memory format, as reports print them."""
        return self.precision + (" CL" if self.channels_last else "")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return None if self.precision == "fp32" else _DTYPES[self.precision]

    @contextlib.contextmanager
    def numerics(self) -> Iterator[None]:
        """fp32 on CUDA means fp32: cuDNN's TF32 convolutions (on by default) and TF32 matmuls off inside."""
        if self.precision == "fp32" and self.device.type == "cuda":
            with strict_fp32():
                yield
        else:
            yield

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass in the plan's precision (autocast for bf16/fp16; true fp32 otherwise)."""
        dtype = self.autocast_dtype
        if dtype is None:
            with self.numerics():
                yield
            return
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()


def plan_execution(device: str = "auto", precision: str = "auto", channels_last: bool | None = None) -> ExecutionPlan:
    """Resolve user choices; channels_last defaults on for CPU and CUDA (big wins: see benchmarks/FAST_PATH.md)."""
    resolved = resolve_device(device)
    chosen_precision = resolve_precision(precision, resolved)
    if channels_last is None:
        channels_last = resolved.type in ("cpu", "cuda")
    return ExecutionPlan(resolved, chosen_precision, channels_last)


def pinned_for(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor bound for a CUDA device in page-locked memory, so `.to(device, non_blocking=True)` is
    asynchronous (from pageable memory it is a synchronous staged copy); anything else as it is."""
    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        return tensor.pin_memory()
    return tensor


def labels_to_host(logits: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """[N, C, H, W] logits -> [N, H, W] class indices on the host, the argmax taken where the logits are.

    Only the labels cross to the host (uint8 when the classes fit: 1 byte a pixel instead of 4 x C),
    on CUDA into page-locked memory with a non-blocking copy. torch.argmax returns the first maximal
    index on every device, so the labels equal an argmax of the same logits on the CPU.
    """
    labels = logits.argmax(dim=1).to(torch.uint8 if np.dtype(dtype) == np.uint8 else torch.int64)
    if labels.device.type != "cuda":
        return labels.cpu().numpy()
    host = torch.empty(labels.shape, dtype=labels.dtype, pin_memory=True)
    host.copy_(labels, non_blocking=True)
    torch.cuda.current_stream(labels.device).synchronize()
    return host.numpy()
