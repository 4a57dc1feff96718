"""What machine a benchmark ran on: torch, CUDA, GPU, CPU model, threads."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    fallback = platform.processor() or platform.machine() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        return fallback
    return fallback


def environment_info(device: torch.device) -> dict[str, Any]:
    """Versions and hardware that the figures depend on; goes into the table header and the JSON."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "cuda": torch.version.cuda,
        "gpu": None,
        "cudnn": None,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def describe_environment(info: dict[str, Any]) -> str:
    """One line for the table title."""
    parts = [f"torch {info['torch']}"]
    if info.get("gpu"):
        parts.append(f"{info['gpu']} (CUDA {info['cuda']})")
    parts.append(f"CPU {info['cpu']}, {info['torch_threads']} threads")
    return ", ".join(parts)


SPREAD_WARNING = 0.25  # (p90 - p10) / p50 above this: the timings of a row are too scattered to compare


def load_average() -> list[float] | None:
    """os.getloadavg() (1, 5, 15 minutes), rounded; None where the system has none (Windows)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def timing_warnings(load: dict[str, Any], spreads: list[tuple[str, str, float | None]]) -> list[str]:
    """Warning lines: a load average (1 min) above the core count, and rows whose spread is high."""
    warnings = []
    cores = load.get("cores") or 0
    averages = [values[0] for values in (load.get("start"), load.get("end")) if values]
    if cores and averages and max(averages) > cores:
        warnings.append(f"warning: load average {max(averages):.1f} on {cores} cores: other programs share this "
                        "machine, so timings and ratios may differ between runs; rerun on a quiet machine")
    scattered = [f"{model} {size}" for model, size, spread in spreads if spread is not None and spread > SPREAD_WARNING]
    if scattered:
        warnings.append(f"warning: timings spread (p10-p90) over more than {SPREAD_WARNING:.0%} of the median in "
                        f"{len(scattered)} row(s) ({', '.join(dict.fromkeys(scattered))}): use more iterations, "
                        "or compare rows with care")
    return warnings
