"""Throughput of `segcli predict --engine ray` with 1 and 2 workers against the local engine, on the same folder.

Every run is a fresh `segcli predict` process (a local Ray instance started by each Ray run, as a
user's laptop run would). Per image = (wall time of a LARGE-image run - wall time of a SMALL-image
run) / (LARGE - SMALL), so start-up (imports, Ray's start, actors loading the model) cancels out;
start-up = the SMALL run's time minus SMALL x per image. Runs are interleaved, the variant order
reversed every other round; reported: the fastest run of each size per variant (other programs
only ever add time), and the ratio to the local engine measured in the same rounds.

    python benchmarks/ray_throughput.py                         # lraspp, 4 vs 24 images, 1 round
    python benchmarks/ray_throughput.py --rounds 2 --out /tmp/ray-speed

Writes OUT.json (every run) and OUT.md (the table, with this command at the top).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZE = (384, 512)  # height, width of every image: 512x384 synthetic scenes, JPEG quality 90
VARIANTS = {"local": [], "ray_1_worker": ["--engine", "ray", "--workers", "1"],
            "ray_2_workers": ["--engine", "ray", "--workers", "2"]}


def make_folders(root: Path, counts: tuple[int, int]) -> dict[int, Path]:
    from segcli.data.synth import encode_jpeg, make_scene

    folders = {count: root / f"images{count}" for count in counts}
    for count, folder in folders.items():
        folder.mkdir(parents=True)
        for index in range(count):
            scene = make_scene(3, 1000 + index, SIZE)
            (folder / f"{index:03d}.jpg").write_bytes(encode_jpeg(scene.image, 90))
    return folders


def timed_run(argv: list[str]) -> float:
    """Wall seconds of one fresh process (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(argv, check=True, cwd=REPO, capture_output=True)
    return time.perf_counter() - started


def measure(args: argparse.Namespace, folders: dict[int, Path], scratch: Path) -> dict:
    runs: list[dict] = []
    small, large = args.small, args.large
    for round_index in range(args.rounds):
        names = list(VARIANTS) if round_index % 2 == 0 else list(VARIANTS)[::-1]
        for name in names:
            for count in (small, large):
                out = scratch / f"{name}-{round_index}-{count}"
                argv = [sys.executable, "-m", "segcli", "predict", str(folders[count]), "--model", args.model,
                        "--device", "cpu", "--out", str(out), "-q", *VARIANTS[name]]
                runs.append({"variant": name, "round": round_index, "images": count, "seconds": timed_run(argv)})
                print(f"  round {round_index} {name} {count} images: {runs[-1]['seconds']:.1f} s", flush=True)
    rows = {}
    for name in VARIANTS:
        fastest = {count: min(run["seconds"] for run in runs if run["variant"] == name and run["images"] == count)
                   for count in (small, large)}
        per_image = (fastest[large] - fastest[small]) / (large - small)
        rows[name] = {"ms_per_image": per_image * 1000, "images_per_second": 1 / per_image,
                      "start_up_seconds": fastest[small] - small * per_image,
                      "seconds_small": fastest[small], "seconds_large": fastest[large]}
    for row in rows.values():
        row["time_vs_local"] = row["ms_per_image"] / rows["local"]["ms_per_image"]
    return {"runs": runs, "variants": rows}


def markdown(report: dict) -> str:
    small, large = report["images"]
    lines = [
        "# `segcli predict --engine ray` vs the local engine", "",
        f"Made by `{report['command']}`", "",
        f"Model {report['model']} (shipped weights), CPU, fp32/auto as `segcli predict` chooses; {large} vs {small} "
        f"synthetic JPEG scenes of {SIZE[1]}x{SIZE[0]}, default outputs (label PNG, overlay, JSON). Per image = "
        f"(t{large} - t{small}) / {large - small} from the fastest of {report['rounds']} interleaved round(s); "
        "each run a fresh process, each Ray run starting its own local Ray instance. "
        f"Machine: {report['machine']}; load average (1, 5, 15 min) {report['load_average_before']} before, "
        f"{report['load_average_after']} after. **The machine was shared with other jobs (other agents' "
        "builds and tests) while this ran: the figures are noisy, compare them with each other only.**", "",
        "- local: `segcli predict FOLDER` (on 2 cores: two lanes of one image, one torch thread each).",
        "- ray, N workers: `segcli predict FOLDER --engine ray --workers N` (N actors of one CPU each, "
        "one image per call).", "",
        "| engine | ms/image | images/s | time vs local | start-up s | "
        f"t{small} s | t{large} s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in report["variants"].items():
        lines.append(f"| {name.replace('_', ' ')} | {row['ms_per_image']:.1f} | {row['images_per_second']:.2f} | "
                     f"{row['time_vs_local']:.2f}x | {row['start_up_seconds']:.1f} | {row['seconds_small']:.1f} | "
                     f"{row['seconds_large']:.1f} |")
    lines += ["", "Every run's wall time is in the JSON next to this file (`runs`).", ""]
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lraspp", help="zoo name (shipped weights)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--small", type=int, default=4, help="images in the short run")
    parser.add_argument("--large", type=int, default=24, help="images in the long run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "ray_throughput")
    parser.add_argument("--markdown-from", type=Path, default=None, metavar="JSON",
                        help="only write OUT.md again from a JSON this script wrote")
    args = parser.parse_args()
    if args.markdown_from:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.markdown_from.read_text())))
        return
    report = {"command": shlex.join(["python", "benchmarks/ray_throughput.py", *sys.argv[1:]]),
              "rounds": args.rounds, "model": args.model, "images": [args.small, args.large],
              "machine": f"{_cpu_name()}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
                         f"Python {platform.python_version()}",
              "load_average_before": [round(value, 2) for value in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="segcli-ray-throughput-") as tmp:
        folders = make_folders(Path(tmp), (args.small, args.large))
        report.update(measure(args, folders, Path(tmp, "out")))
    report["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
