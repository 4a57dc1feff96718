"""Throughput of `segcli predict --engine ray` with 1 and 2 workers against the local engine, on the same folder.

Every run is a fresh `segcli predict` process over the same folder of IMAGES synthetic scenes (each
Ray run starts its own local Ray instance, as a user's laptop run does). Two figures per run:
- steady throughput: (sets written - 1) / (time the last set landed - time the first landed), from
  the JSON summaries' modification times (each is renamed into place last, when its set is
  complete), so imports, Ray's start and the actors' model loads are left out;
- wall time of the whole command, start-up included.
Runs are interleaved, the variant order reversed every other round; reported: the best round of
each variant (other programs only ever slow a run down) and the ratio to the local engine.

    python benchmarks/ray_throughput.py                         # lraspp, 32 images, 2 rounds
    python benchmarks/ray_throughput.py --images 16 --rounds 1 --out /tmp/ray-speed

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
from pathlib import Path

from segcli.benchmarking.measure import time_call

from folder_speed import cpu_name, load_average, write_report  # this folder is on sys.path when a script here runs

REPO = Path(__file__).resolve().parent.parent
SIZE = (384, 512)  # height, width of every image: 512x384 synthetic scenes, JPEG quality 90
# variant -> (extra arguments, extra environment); "local_1_lane" runs what one Ray worker runs (one image
# stream, one torch thread: Ray sets OMP_NUM_THREADS=1 in a one-CPU actor) in the local engine
VARIANTS = {"local": ([], {}), "local_1_lane": (["--batch-size", "1", "--io-workers", "0"], {"OMP_NUM_THREADS": "1"}),
            "ray_1_worker": (["--engine", "ray", "--ray-workers", "1"], {}),
            "ray_2_workers": (["--engine", "ray", "--ray-workers", "2"], {})}


def make_folder(root: Path, count: int) -> Path:
    from segcli.data.synth import encode_jpeg, make_scene

    folder = root / "images"
    folder.mkdir(parents=True)
    for index in range(count):
        scene = make_scene(3, 1000 + index, SIZE)
        (folder / f"{index:03d}.jpg").write_bytes(encode_jpeg(scene.image, 90))
    return folder


def timed_run(argv: list[str], env: dict[str, str], out: Path) -> dict:
    """One fresh process (it must succeed): wall seconds, and the steady rate from the sets' landing times."""
    # its own session, as Ray's actors are: with the kernel's autogroup scheduling each session gets a fair
    # share of a busy machine's cores, so a command left in this script's session would get less than they do
    wall = time_call(lambda: subprocess.run(argv, check=True, cwd=REPO, capture_output=True, start_new_session=True,
                                            env={**os.environ, **env})).wall_ms / 1000.0
    landed = sorted(path.stat().st_mtime_ns for path in out.rglob("*.json"))
    steady = (len(landed) - 1) / ((landed[-1] - landed[0]) / 1e9) if len(landed) > 1 and landed[-1] > landed[0] \
        else None
    return {"seconds": wall, "sets": len(landed), "steady_images_per_second": steady}


def measure(args: argparse.Namespace, folder: Path, scratch: Path) -> dict:
    runs: list[dict] = []
    for round_index in range(args.rounds):
        names = list(VARIANTS) if round_index % 2 == 0 else list(VARIANTS)[::-1]
        for name in names:
            out = scratch / f"{name}-{round_index}"
            argv = [sys.executable, "-m", "segcli", "predict", str(folder), "--model", args.model,
                    "--device", "cpu", "--out", str(out), "-q", *VARIANTS[name][0]]
            runs.append({"variant": name, "round": round_index, **timed_run(argv, VARIANTS[name][1], out)})
            print(f"  round {round_index} {name}: {runs[-1]}", flush=True)
    rows = {}
    for name in VARIANTS:
        mine = [run for run in runs if run["variant"] == name]
        rate = max(run["steady_images_per_second"] or 0.0 for run in mine)
        rows[name] = {"steady_images_per_second": rate, "ms_per_image": 1000 / rate if rate else None,
                      "wall_seconds": min(run["seconds"] for run in mine)}
    local = rows["local"]
    for row in rows.values():
        row["throughput_vs_local"] = row["steady_images_per_second"] / local["steady_images_per_second"]
        row["wall_vs_local"] = row["wall_seconds"] / local["wall_seconds"]
    return {"runs": runs, "variants": rows}


def markdown(report: dict) -> str:
    count = report["images"]
    lines = [
        "# `segcli predict --engine ray` vs the local engine", "",
        f"Made by `{report['command']}`", "",
        f"Model {report['model']} (shipped weights), CPU, precision as `segcli predict` chooses; one folder of "
        f"{count} synthetic JPEG scenes of {SIZE[1]}x{SIZE[0]}, default outputs (label PNG, overlay, JSON). "
        f"Best of {report['rounds']} interleaved round(s); each run a fresh process, each Ray run starting its own "
        "local Ray instance. Steady throughput = (sets - 1) / (last set landed - first set landed), from the JSON "
        "summaries' modification times (start-up left out); wall = the whole command, start-up included. "
        f"Machine: {report['machine']}; load average (1, 5, 15 min) {report['load_average_before']} before, "
        f"{report['load_average_after']} after; kernel autogroup scheduling {report.get('autogroup', '?')}. "
        "**The machine was shared with other jobs (other agents' builds and tests) while this ran: the figures are "
        "noisy; compare them with each other only.** With autogroup on, the kernel shares a busy machine's cores "
        "between sessions, and every Ray actor runs in a session of its own: N actors get N shares where the "
        "local engine's run (started in a session of its own here too) gets one. On a quiet machine that "
        "advantage disappears.", "",
        "- local: `segcli predict FOLDER` (on 2 cores: two lanes of one image, one torch thread each).",
        "- local 1 lane: `OMP_NUM_THREADS=1 segcli predict FOLDER --batch-size 1 --io-workers 0`: one image at a "
        "time on one torch thread, what one Ray worker runs.",
        "- ray, N workers: `segcli predict FOLDER --engine ray --ray-workers N` (N actors of one CPU each, "
        "one image per call).", "",
        "| engine | steady images/s | ms/image | throughput vs local | wall s (start-up included) | wall vs local |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["variants"].items():
        lines.append(f"| {name.replace('_', ' ')} | {row['steady_images_per_second']:.2f} | "
                     f"{row['ms_per_image']:.0f} | {row['throughput_vs_local']:.2f}x | {row['wall_seconds']:.1f} | "
                     f"{row['wall_vs_local']:.2f}x |")
    lines += ["", "Every run's figures are in the JSON next to this file (`runs`).", ""]
    return "\n".join(lines)


def _autogroup() -> str:
    try:
        return "on" if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1" else "off"
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lraspp", help="zoo name (shipped weights)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=32, help="images in the folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "ray_throughput")
    parser.add_argument("--markdown-from", type=Path, default=None, metavar="JSON",
                        help="only write OUT.md again from a JSON this script wrote")
    args = parser.parse_args()
    if args.markdown_from:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.markdown_from.read_text())))
        return
    report = {"command": shlex.join(["python", "benchmarks/ray_throughput.py", *sys.argv[1:]]),
              "rounds": args.rounds, "model": args.model, "images": args.images,
              "machine": f"{cpu_name()}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
                         f"Python {platform.python_version()}",
              "load_average_before": load_average(), "autogroup": _autogroup()}
    with tempfile.TemporaryDirectory(prefix="segcli-ray-throughput-") as tmp:
        folder = make_folder(Path(tmp), args.images)
        report.update(measure(args, folder, Path(tmp, "out")))
    report["load_average_after"] = load_average()
    write_report(report, args.out, markdown)


if __name__ == "__main__":
    main()
