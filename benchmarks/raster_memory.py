"""Peak memory of `segcli predict scene.tif` on a big GeoTIFF: the raster path holds one band of logits.

A SIZE x SIZE 3-band uint8 GeoTIFF (EPSG:32633, 512x512 tiles, deflate; stripes and squares) is
written window by window, then segmented by `segcli predict` in a child process (the shipped
LR-ASPP by default, CPU, fp32). Reported: the child's peak RSS (resource.getrusage RUSAGE_CHILDREN,
ru_maxrss), wall time, megapixels per second (raster pixels / wall time, model load included; and
from the summary JSON's own seconds, model load excluded). Target: peak RSS <= 2 GB.

    python benchmarks/raster_memory.py                        # 20000 x 20000
    python benchmarks/raster_memory.py --size 8000 --out benchmarks/raster_memory

Writes OUT.json and OUT.md (with the CPU name, this command and the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from segcli.benchmarking.measure import time_call

from folder_speed import cpu_name  # this folder is on sys.path when a script here runs

REPO = Path(__file__).resolve().parent.parent
BLOCK = 512


def write_scene(path: Path, size: int) -> float:
    """The test raster, written one 512-row strip at a time; returns the seconds taken."""
    return time_call(lambda: _write_strips(path, size)).wall_ms / 1000.0


def _write_strips(path: Path, size: int) -> None:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000.0, 5400000.0, 0.5, 0.5),
               "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "BIGTIFF": "YES"}
    xx = np.arange(size)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, BLOCK):
            rows = min(BLOCK, size - top)
            yy = np.arange(top, top + rows)[:, None]
            squares = (((xx[None, :] // 300) + (yy // 300)) % 2).astype(np.uint8)
            strip = np.stack([(xx[None, :] // 40 % 200 + yy * 0) % 256, squares * 180 + 30,
                              ((yy // 50) % 5 * 50 + xx[None, :] * 0)]).astype(np.uint8)
            dst.write(strip, window=Window(0, top, size, rows))


def run(size: int, model: str, workdir: Path, extra: list[str]) -> dict:
    scene = workdir / "scene.tif"
    generate_seconds = write_scene(scene, size)
    out = workdir / "out"
    command = [sys.executable, "-m", "segcli", "predict", str(scene), "--model", model, "--device", "cpu",
               "--precision", "fp32", "--out", str(out), "--overwrite", *extra]
    load_before = [round(value, 2) for value in os.getloadavg()]
    timing = time_call(lambda: subprocess.run(command, capture_output=True, text=True))
    completed, wall = timing.result, timing.wall_ms / 1000.0
    if completed.returncode != 0:
        raise SystemExit(f"segcli failed ({completed.returncode}):\n{completed.stderr}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    summary = json.loads((out / "scene.json").read_text())
    megapixels = size * size / 1e6
    return {
        "size": size, "megapixels": megapixels, "model": model, "command": shlex.join(command[1:]),
        "cpu": cpu_name(), "cores": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "peak_rss_mib": round(peak_kib / 1024, 1), "target_mib": 2048,
        "wall_seconds": round(wall, 1), "segment_seconds": summary["seconds"],
        "megapixels_per_second_wall": round(megapixels / wall, 3),
        "megapixels_per_second_segment": summary["megapixels_per_second"],
        "tiling": summary["tiling"], "classes": len(summary["categories"]),
        "input_bytes": scene.stat().st_size, "label_bytes": (out / "scene.tif").stat().st_size,
        "generate_seconds": round(generate_seconds, 1),
    }


def markdown(report: dict) -> str:
    verdict = "within" if report["peak_rss_mib"] <= report["target_mib"] else "ABOVE"
    return "\n".join([
        f"# Raster memory: {report['size']} x {report['size']} GeoTIFF ({report['megapixels']:.0f} MP)", "",
        f"`python benchmarks/raster_memory.py --size {report['size']}` on {report['cpu']} "
        f"({report['cores']} cores, shared; load average {report['load_average_before']} before, "
        f"{report['load_average_after']} after).", "",
        "| model | classes | tile / overlap | peak RSS | wall | MP/s (wall) | MP/s (segmenting) |",
        "|---|---|---|---|---|---|---|",
        f"| {report['model']} | {report['classes']} | {report['tiling']['tile_size']} / {report['tiling']['overlap']} "
        f"| {report['peak_rss_mib']:.0f} MiB | {report['wall_seconds']:.0f} s "
        f"| {report['megapixels_per_second_wall']:.2f} | {report['megapixels_per_second_segment']:.2f} |", "",
        f"Peak RSS is {verdict} the {report['target_mib']} MiB target. Command: `{report['command']}`.", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--model", default="lraspp")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "raster_memory")
    parser.add_argument("--workdir", type=Path, default=None, help="where the raster goes [default: a temporary]")
    parser.add_argument("extra", nargs="*", help="more segcli predict flags (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        report = run(args.size, args.model, Path(folder), args.extra)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
