"""Folder throughput of `predict`'s pipeline (segcli.pipeline): images/s per schedule, outputs compared.

A random-weights zoo model (seeded) runs over a folder of synthetic JPEGs through `FolderRun`
with several schedules: one image at a time on one thread (`1x0`: batch 1, no I/O threads), the
automatic schedule (`auto`: Schedule.auto for the device and this machine's cores), and batch B
with W decode/write threads each (`BxW`). Every schedule's label PNGs must equal the first's
byte for byte (the run fails otherwise); `outputs_sha256` (one digest over every output PNG)
compares runs of different segcli versions. Per schedule: the best of --rounds runs, after one
warm-up run, images/s = images / wall seconds of the run (model load not included).

    python benchmarks/pipeline_lanes.py --device cpu --size 128 --images 24 --schedules 1x0,auto,1x2
    python benchmarks/pipeline_lanes.py --device cuda --model deeplabv3-resnet50 --size 512 --images 256 \\
        --schedules 1x0,auto,8x2,8x4,8x8 --json gpu-lanes.json --markdown gpu-lanes.md

Writes --json (every run) and --markdown (the table, this command at the top) when given.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_folder(folder: Path, count: int, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        rng = np.random.default_rng(index)
        coarse = rng.integers(0, 256, size=(max(2, size // 16), max(2, size // 16), 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        (folder / f"{index:05d}.jpg").write_bytes(buffer.getvalue())
    return folder


def parse_schedule(text: str, device_type: str):
    from segcli.pipeline.scheduler import Schedule

    if text == "auto":
        return Schedule.auto(device_type)
    batch, workers = text.split("x")
    return Schedule(batch_size=int(batch), io_workers=int(workers))


def label_digests(out: Path) -> dict[str, str]:
    return {str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(out.rglob("*.png"))}


def run_once(engine, sources, schedule, out: Path) -> float:
    from segcli.outputs.plan import OutputOptions
    from segcli.pipeline.run import FolderRun

    started = time.perf_counter()
    summary = FolderRun(OutputOptions(out, overwrite=True), sources).execute(engine, schedule=schedule)
    seconds = time.perf_counter() - started
    if summary.failed or summary.processed != len(sources):
        raise SystemExit(f"pipeline run failed: {summary.failed[:1]} ({summary.processed} of {len(sources)} written)")
    return seconds


def build_engine(subject, device: str, precision: str):
    """The engine as segcli builds it (`SegmentationEngine.from_checkpoint`)."""
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions
    from segcli.loaded_model import LoadedModel

    return SegmentationEngine.from_checkpoint(LoadedModel(subject.model, subject.record), device=device,
                                              options=InferenceOptions(precision=precision))


def measure(args: argparse.Namespace) -> dict:
    import torch

    from segcli.benchmarking.subjects import random_subject
    from segcli.inputs import find_images

    subject = random_subject(args.model)
    engine = build_engine(subject, args.device, args.precision)
    plan = engine.plan
    results: list[dict] = []
    reference: dict[str, str] | None = None
    with tempfile.TemporaryDirectory(prefix="segcli-lanes-") as scratch:
        sources = find_images([synthetic_folder(Path(scratch, "in"), args.images, args.size)])
        for text in args.schedules.split(","):
            schedule = parse_schedule(text, plan.device.type)
            out = Path(scratch, f"out-{text}")
            run_once(engine, sources[: max(1, schedule.batch_size)], schedule, Path(scratch, "warm"))
            seconds = [run_once(engine, sources, schedule, out) for _ in range(args.rounds)]
            digests = label_digests(out)
            reference = reference or digests
            if digests != reference:
                raise SystemExit(f"schedule {text}: outputs differ from the first schedule's")
            best = min(seconds)
            results.append({"schedule": text, "batch_size": schedule.batch_size, "io_workers": schedule.io_workers,
                            "lanes": schedule.lanes, "seconds": seconds, "images_per_s": args.images / best})
            print(f"{text:>6}: {args.images / best:8.1f} images/s (batch {schedule.batch_size}, "
                  f"{schedule.io_workers} I/O threads, {schedule.lanes} lane(s))", flush=True)
    return {"command": " ".join(map(shlex.quote, ["python", *sys.argv])), "model": args.model,
            "device": str(plan.device), "precision": plan.precision, "size": args.size, "images": args.images,
            "rounds": args.rounds, "cores": len(os.sched_getaffinity(0)), "cpu": platform.processor(),
            "gpu": torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else None,
            "torch": torch.__version__, "outputs_identical": True, "results": results,
            "outputs_sha256": hashlib.sha256(json.dumps(reference, sort_keys=True).encode()).hexdigest()}


def markdown(report: dict) -> str:
    lines = [f"# Folder throughput ({report['model']}, {report['size']}x{report['size']}, {report['device']})", "",
             "```", report["command"], "```", "",
             f"{report['images']} images, best of {report['rounds']} runs after a warm-up; {report['cores']} cores; "
             f"GPU: {report['gpu'] or 'none'}; label PNGs byte-identical across schedules.", "",
             "| schedule | batch | I/O threads | lanes | images/s |", "|---|---|---|---|---|"]
    for row in report["results"]:
        lines.append(f"| {row['schedule']} | {row['batch_size']} | {row['io_workers']} | {row['lanes']} | "
                     f"{row['images_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lraspp")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--schedules", default="1x0,auto")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    report = measure(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(report))


if __name__ == "__main__":
    main()
