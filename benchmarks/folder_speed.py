"""Folder speed as users run it: `segcli predict FOLDER` (a subprocess) against a naive loop over segcli's API.

Per image = (wall time of a 24-image run - wall time of a 4-image run) / 20, so start-up (imports,
model load) cancels out. Every run is a fresh process; runs are interleaved (naive, segcli label
only, segcli default outputs; 4 and 24 images; the order reversed every other round). Reported:
(fastest 24-image run - fastest 4-image run) / 20 per variant, the usual estimator where other
programs only ever add time (a start-up that varies by half a second moves one round's difference
by 25 ms/image), and beside it the median of the per-round differences. The ratio is segcli's
time per image over the naive loop's (< 1: segcli is faster). Targets: label only
<= 0.67, default outputs <= 1.0.

    python benchmarks/folder_speed.py                     # both shipped models, 3 rounds
    python benchmarks/folder_speed.py --models lraspp --rounds 5 --cpus 0,1 --out /tmp/speed
    python benchmarks/folder_speed.py --models lraspp --rounds 1 --small 1 --large 3   # a smoke test

Writes OUT.json (every run) and OUT.md (the table, with this command at the top).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from segcli.benchmarking.measure import time_call

REPO = Path(__file__).resolve().parent.parent
SIZE = (384, 512)  # height, width of every image: 512x384

# What a user writes with segcli's API: fp32, one image at a time, a label PNG per image (PIL's encoder).
NAIVE_LOOP = """\
import sys
from pathlib import Path
from segcli.engine import SegmentationEngine
from segcli.inference_options import InferenceOptions
from segcli.imageio import load_image
from segcli.outputs.images import label_png

model, folder, out, device = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
engine = SegmentationEngine.load(model, device=device, options=InferenceOptions(precision="fp32"))
out.mkdir(parents=True, exist_ok=True)
for path in sorted(folder.glob("*.jpg")):
    labels = engine.predict(load_image(path).rgb).labels
    label_png(labels, engine.record.palette, engine.record.num_classes).save(out / f"{path.stem}.png")
"""


def make_folders(root: Path, counts: tuple[int, int]) -> dict[int, Path]:
    """Two folders of synthetic 512x384 JPEG scenes: the first `small`, and all `large`."""
    from segcli.data.synth import encode_jpeg, make_scene

    folders = {count: root / f"images{count}" for count in counts}
    for count, folder in folders.items():
        folder.mkdir(parents=True)
        for index in range(count):
            scene = make_scene(3, 1000 + index, SIZE)
            (folder / f"{index:03d}.jpg").write_bytes(encode_jpeg(scene.image, 90))
    return folders


def commands(model: str, device: str, folder: Path, out: Path) -> dict[str, list[str]]:
    segcli = [sys.executable, "-m", "segcli", "predict", str(folder), "--model", model, "--device", device,
              "--out", str(out), "-q"]
    return {
        "naive": [sys.executable, "-c", NAIVE_LOOP, model, str(folder), str(out), device],
        "segcli_label": [*segcli, "--outputs", "label,json"],
        "segcli_default": segcli,
    }


def timed_run(argv: list[str], cpus: set[int] | None, nice: int) -> float:
    """Wall seconds of one fresh process (it must succeed)."""
    def before_exec() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)

    run = lambda: subprocess.run(argv, check=True, cwd=REPO, capture_output=True, preexec_fn=before_exec)  # noqa: E731
    return time_call(run).wall_ms / 1000.0


def measure(model: str, args: argparse.Namespace, folders: dict[int, Path], scratch: Path) -> dict:
    """Interleaved rounds; per-image milliseconds of each variant per round, medians and ratios."""
    runs: list[dict] = []
    per_image: dict[str, list[float]] = {}
    small, large = args.small, args.large
    for round_index in range(args.rounds):
        names = list(commands(model, args.device, folders[small], scratch))
        for name in names if round_index % 2 == 0 else names[::-1]:
            seconds = {}
            for count in (small, large):
                out = scratch / f"{model}-{name}-{round_index}-{count}"
                argv = commands(model, args.device, folders[count], out)[name]
                seconds[count] = timed_run(argv, args.cpus, args.nice)
                runs.append({"model": model, "variant": name, "round": round_index, "images": count,
                             "seconds": seconds[count]})
            per_image.setdefault(name, []).append((seconds[large] - seconds[small]) / (large - small) * 1000)
            print(f"  {model} round {round_index} {name}: {per_image[name][-1]:.1f} ms/image", flush=True)
    medians = {name: statistics.median(values) for name, values in per_image.items()}
    fastest = {name: (min(run["seconds"] for run in runs if run["variant"] == name and run["images"] == large)
                      - min(run["seconds"] for run in runs if run["variant"] == name and run["images"] == small))
               / (large - small) * 1000 for name in per_image}
    return {"model": model, "runs": runs, "ms_per_image": per_image, "median_ms_per_image": medians,
            "fastest_ms_per_image": fastest,
            "ratio_label": fastest["segcli_label"] / fastest["naive"],
            "ratio_default": fastest["segcli_default"] / fastest["naive"],
            "median_ratio_label": medians["segcli_label"] / medians["naive"],
            "median_ratio_default": medians["segcli_default"] / medians["naive"]}


def markdown(report: dict) -> str:
    small, large = report["images"]
    lines = [
        "# Folder speed: `segcli predict FOLDER` vs a naive loop over segcli's API", "",
        f"Made by `{report['command']}`", "",
        f"{large} vs {small} synthetic JPEG scenes of {SIZE[1]}x{SIZE[0]}; per image = (t{large} - t{small}) / "
        f"{large - small}, start-up removed, from the fastest of {report['rounds']} interleaved rounds per run "
        "(the median of the per-round differences in brackets); each run a fresh process. "
        f"Machine: {report['machine']}; CPUs used: {report['cpus']}; device {report['device']}; "
        f"nice {report['nice']}; load average (1, 5, 15 min) {report['load_average_before']} before, "
        f"{report['load_average_after']} after (other programs running at the same time make torch's "
        "multi-threaded forward pass, the naive loop's, far slower: compare figures from a quiet machine).", "",
        "- naive: `SegmentationEngine.load(model, options=InferenceOptions(precision=\"fp32\"))`, then per image `load_image`, `predict`, "
        "`label_png(...).save(...)` (the loop is in `benchmarks/folder_speed.py`).",
        "- segcli label only: `segcli predict FOLDER --outputs label,json` (label PNG + JSON summary per image).",
        "- segcli default: `segcli predict FOLDER` (label PNG, overlay PNG, JSON summary per image).", "",
        "Ratio = segcli's time per image / the naive loop's (< 1: segcli is faster). "
        "Targets: label only <= 0.67, default <= 1.0.", "",
        "| model | naive ms/image | segcli label only ms/image | ratio | segcli default ms/image | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["models"]:
        fast, mid = row["fastest_ms_per_image"], row["median_ms_per_image"]
        lines.append(
            f"| {row['model']} | {fast['naive']:.1f} ({mid['naive']:.1f}) | {fast['segcli_label']:.1f} "
            f"({mid['segcli_label']:.1f}) | **{row['ratio_label']:.2f}** ({row['median_ratio_label']:.2f}) | "
            f"{fast['segcli_default']:.1f} ({mid['segcli_default']:.1f}) | **{row['ratio_default']:.2f}** "
            f"({row['median_ratio_default']:.2f}) |")
    lines += ["", "Per-round figures (ms/image) are in the JSON next to this file (`ms_per_image`, `runs`).", ""]
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU model, as /proc/cpuinfo names it (also used by ray_throughput.py)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded (recorded before and after each benchmark run)."""
    return [round(value, 2) for value in os.getloadavg()]


def write_report(report: dict, out: Path, markdown_of) -> None:
    """OUT.json (every figure) and OUT.md (`markdown_of(report)`, also printed); shared with ray_throughput.py."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown_of(report))
    print(markdown_of(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="deeplabv3p,lraspp", help="comma-separated zoo names (shipped weights)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpus", type=lambda text: {int(cpu) for cpu in text.split(",")}, default=None,
                        help="run every process on these CPUs only, e.g. 0,1 (default: all this process may use)")
    parser.add_argument("--small", type=int, default=4, help="images in the short run")
    parser.add_argument("--large", type=int, default=24, help="images in the long run")
    parser.add_argument("--nice", type=int, default=0,
                        help="run every process at this nice value (root may go below 0)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "folder_speed")
    parser.add_argument("--markdown-from", type=Path, default=None, metavar="JSON",
                        help="only write OUT.md again from a JSON this script wrote")
    args = parser.parse_args()
    if args.markdown_from:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.markdown_from.read_text())))
        return
    cpus = sorted(args.cpus) if args.cpus else sorted(os.sched_getaffinity(0))
    report = {"command": shlex.join(["python", "benchmarks/folder_speed.py", *sys.argv[1:]]), "rounds": args.rounds,
              "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "cpus": ",".join(map(str, cpus)), "device": args.device,
              "images": [args.small, args.large], "nice": args.nice, "naive_loop": NAIVE_LOOP, "models": []}
    report["load_average_before"] = load_average()
    with tempfile.TemporaryDirectory(prefix="segcli-folder-speed-") as tmp:
        folders = make_folders(Path(tmp), (args.small, args.large))
        for model in args.models.split(","):
            report["models"].append(measure(model.strip(), args, folders, Path(tmp, "out")))
    report["load_average_after"] = load_average()
    write_report(report, args.out, markdown)


if __name__ == "__main__":
    main()
