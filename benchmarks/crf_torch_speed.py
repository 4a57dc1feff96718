"""The dense CRF in torch (segcli/crf_torch.py): speed and agreement, for benchmarks/crf_speed.py.

CPU (`--torch-cpu`): 21 labels, 256x256 and 520x520 synthetic scenes, 10 and 5 mean-field iterations;
per image, interleaved rounds of pydensecrf's reference (`--crf-full`), the fast path (`--crf` on the
CPU: iterations as the settings say, capped at 5 as when not given) and the torch CRF (torch on
`--torch-threads`, 1 by default; pydensecrf is single-threaded); medians of the rounds; agreement = share of pixels whose
label equals the reference's. Probabilities: softmax of a box-blurred, noisy one-hot of the scene's
mask (a map the CRF changes on a good share of pixels), like tests/crf_torch_inputs.py.

CUDA (`--torch-cuda`): 512, 1024 and 2048 px, 21 labels, 10 iterations: median milliseconds per image
after two warm-up runs, on-device (tensors already on the GPU) and end to end from numpy (what the
engine does: copy in, CRF, copy out), peak GPU memory; at 512 px the labels are compared with the
torch CRF on the CPU and with pydensecrf's reference, whose one-core time gives the speed-up.
"""

from __future__ import annotations

import statistics
import subprocess

import numpy as np
import torch

from segcli.benchmarking.measure import LatencyStats, time_call, time_calls
from segcli.crf import CRFParams, dense_crf, refine
from segcli.crf_torch import DenseCRF, dense_crf_torch
from segcli.data.synth import make_scene

LABELS = 21
CPU_SIZES = (256, 520)
CPU_ITERATIONS = (10, 5)
CUDA_SIZES = (512, 1024, 2048)
TARGET_MS_512 = 15.0
TARGET_SPEEDUP = 40.0


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")]
    return names[0] if names else "unknown"


def scene_probabilities(size: int, index: int, confidence: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [21, size, size], image) for synthetic scene `index`."""
    scene = make_scene(11, index, (size, size))
    onehot = torch.tensor(np.eye(LABELS, dtype=np.float32)[scene.mask.astype(np.int64) % LABELS]).permute(2, 0, 1)
    blurred = torch.nn.functional.avg_pool2d(onehot[None], 9, stride=1, padding=4, count_include_pad=False)[0]
    noise = torch.tensor(np.random.default_rng(index).normal(0.0, 0.35, blurred.shape), dtype=torch.float32)
    return torch.softmax(confidence * (blurred + noise), 0).numpy(), scene.image


def _timed(run) -> tuple[float, object]:
    """Wall seconds of one call, and its result (segcli.benchmarking's timer)."""
    timing = time_call(run)
    return timing.wall_ms / 1000.0, timing.result


def _cpu_image(probabilities: np.ndarray, image: np.ndarray, params: CRFParams, repeats: int) -> dict:
    times: dict[str, list[float]] = {"reference": [], "fast": [], "torch": []}
    for _ in range(repeats):  # interleaved, so all three see the same machine load
        seconds, (reference, _) = _timed(lambda: refine(probabilities, image, params, method="full"))
        times["reference"].append(seconds)
        seconds, (fast, _) = _timed(lambda: refine(probabilities, image, params, method="fast"))
        times["fast"].append(seconds)
        seconds, ours = _timed(lambda: dense_crf_torch(probabilities, image, params).numpy())
        times["torch"].append(seconds)
    labels = reference.argmax(0)
    return {**{f"{name}_s": statistics.median(values) for name, values in times.items()},
            "torch_pixels_equal": float((ours.argmax(0) == labels).mean()),
            "fast_pixels_equal": float((fast.argmax(0) == labels).mean()),
            "pixels_changed_by_reference_crf": float((labels != probabilities.argmax(0)).mean())}


def measure_cpu(images: int, repeats: int, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    rows = []
    for size in CPU_SIZES:
        for iterations in CPU_ITERATIONS:
            params = CRFParams(iterations=iterations)
            per_image = [_cpu_image(*scene_probabilities(size, index), params, repeats) for index in range(images)]
            row = {"size": size, "iterations": iterations, "labels": LABELS, "images": images, "repeats": repeats,
                   **{key: statistics.mean(item[key] for item in per_image) for key in per_image[0]},
                   "torch_worst_image_pixels_equal": min(item["torch_pixels_equal"] for item in per_image)}
            rows.append(row)
            print(f"  torch CRF, CPU, {size}px, {iterations} it: reference {row['reference_s']:.2f} s, fast "
                  f"{row['fast_s']:.2f} s, torch {row['torch_s']:.2f} s, {row['torch_pixels_equal']:.2%} equal",
                  flush=True)
    torch.set_num_threads(1)
    return {"torch_threads": threads, "rows": rows}


def _cuda_ms(run, repeats: int) -> float:
    """Median milliseconds of `run` after 2 warm-up calls, the GPU synchronised around each timed call."""
    return LatencyStats.from_samples(time_calls(run, 2, max(repeats, 5), torch.cuda.synchronize)).p50_ms


def measure_cuda(repeats: int) -> dict:
    if not torch.cuda.is_available():
        print("  torch CRF, CUDA: no CUDA device, skipped", flush=True)
        return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    params, rows = CRFParams(iterations=10), []
    for size in CUDA_SIZES:
        probabilities, image = scene_probabilities(size, 0)
        on_gpu = (torch.tensor(probabilities, device="cuda"), torch.tensor(image, device="cuda"))
        torch.cuda.reset_peak_memory_stats()
        device_ms = _cuda_ms(lambda: DenseCRF.build(on_gpu[1], params).inference(on_gpu[0], 10), repeats)
        peak = torch.cuda.max_memory_allocated()
        end_to_end_ms = _cuda_ms(lambda: refine(probabilities, image, params, method="torch", device="cuda"), repeats)
        row = {"size": size, "labels": LABELS, "iterations": 10, "device_ms": device_ms,
               "end_to_end_ms": end_to_end_ms, "peak_gpu_bytes": peak}
        if size == CUDA_SIZES[0]:
            gpu_labels = dense_crf_torch(*on_gpu, params).argmax(0).cpu().numpy()
            cpu_labels = dense_crf_torch(probabilities, image, params).numpy().argmax(0)
            reference_s, reference = _timed(lambda: dense_crf(probabilities, image, params))
            row.update({"pixels_equal_cpu_torch": float((gpu_labels == cpu_labels).mean()),
                        "pixels_equal_reference": float((gpu_labels == reference.argmax(0)).mean()),
                        "reference_one_core_s": reference_s, "speedup_vs_reference": reference_s * 1000.0 / device_ms})
        rows.append(row)
        print(f"  torch CRF, CUDA, {size}px: {device_ms:.1f} ms on device, {end_to_end_ms:.1f} ms end to end, "
              f"peak {peak / 2**20:.0f} MiB", flush=True)
    return {"device": torch.cuda.get_device_name(0), "rows": rows}


def _cpu_lines(cpu: dict) -> list[str]:
    lines = []
    machine = cpu["machine"]
    lines += [f"CPU: `{cpu['command']}` on {machine['cores']} cores ({machine.get('cpu_model', machine['cpu'])}), "
              f"load average at start {machine['load_average_at_start'][0]:.1f} (shared machine); torch threads: "
              f"{cpu['torch_threads']}, pydensecrf on one. Seconds per image, medians of interleaved "
              "rounds; fast = `--crf` on the CPU (iterations capped at 5 when not given).", "",
              "| size | iterations | reference s | fast s | torch s | torch / reference | torch pixels equal "
              "(worst image) | fast pixels equal | changed by the CRF |", "|---|---|---|---|---|---|---|---|---|"]
    for row in cpu["rows"]:
        lines.append(f"| {row['size']}x{row['size']} | {row['iterations']} | {row['reference_s']:.2f} | "
                     f"{row['fast_s']:.2f} | {row['torch_s']:.2f} | {row['torch_s'] / row['reference_s']:.1f}x | "
                     f"{row['torch_pixels_equal']:.2%} ({row['torch_worst_image_pixels_equal']:.2%}) | "
                     f"{row['fast_pixels_equal']:.2%} | {row['pixels_changed_by_reference_crf']:.1%} |")
    return lines + [""]


def markdown(report: dict) -> list[str]:
    """The torch CRF sections of benchmarks/crf_speed.md."""
    lines = ["", "## The dense CRF in torch (segcli/crf_torch.py)", ""]
    cpu_keys = sorted(key for key in report if key.startswith("torch_cpu"))
    for key in cpu_keys:
        lines += _cpu_lines(report[key])
    if cpu_keys:
        lines.append("The torch CRF is slower than pydensecrf on this CPU (pydensecrf's permutohedral code is "
                     "hand-vectorised C++), so `--crf` on the CPU keeps pydensecrf; it runs the torch CRF only "
                     "when pydensecrf is missing. Two torch threads on the shared, loaded machine were slower "
                     "than one (OpenMP threads competing with other jobs), hence one thread in the first table.")
    cuda = report.get("torch_cuda")
    if cuda and "rows" in cuda:
        lines += ["", f"CUDA ({cuda['device']}): `{cuda['command']}`. Target: <= {TARGET_MS_512:.0f} ms per 512x512 "
                  f"image (21 labels, 10 iterations), >= {TARGET_SPEEDUP:.0f}x pydensecrf's reference on one core.", "",
                  "| size | ms on device | ms end to end | peak GPU MiB | equal to CPU torch | equal to reference | "
                  "speed-up |", "|---|---|---|---|---|---|---|"]
        for row in cuda["rows"]:
            extra = (f"{row['pixels_equal_cpu_torch']:.2%} | {row['pixels_equal_reference']:.2%} | "
                     f"{row['speedup_vs_reference']:.0f}x" if "speedup_vs_reference" in row else " | | ")
            lines.append(f"| {row['size']}x{row['size']} | {row['device_ms']:.1f} | {row['end_to_end_ms']:.1f} | "
                         f"{row['peak_gpu_bytes'] / 2**20:.0f} | {extra} |")
    elif cuda:
        lines += ["", f"CUDA: not measured ({cuda['skipped']}); run `python benchmarks/crf_speed.py --cases none "
                  "--torch-cuda` on a GPU machine."]
    return lines + [""]
