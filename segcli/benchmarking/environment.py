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
