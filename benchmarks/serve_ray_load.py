"""Load test: the local `segcli serve` against `segcli serve --engine ray` (1 and 2 replicas), the same clients,
images and settings, on this machine's loopback only (the load and latency figures of benchmarks/serve_load.py).

Each configuration: a fresh server process on a free 127.0.0.1 port, timed from the command to its first
/healthz answer (start-up); a few warm-up requests (not counted); CLIENTS threads posting the images for
SECONDS; then SIGTERM, timed to the process's exit (stop). Labels are checked equal across configurations.

    python benchmarks/serve_ray_load.py --model lraspp --clients 4 --seconds 15

Writes OUT.json (every figure) and OUT.md (the table, with this command at the top).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from folder_speed import cpu_name, load_average  # this folder is on sys.path when a script here runs
from serve_load import free_port, load, post

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {"local": [], "ray, 1 replica": ["--engine", "ray", "--replicas", "1"],
           "ray, 2 replicas": ["--engine", "ray", "--replicas", "2"]}


def start(args, extra: list[str], port: int, log: Path) -> tuple[subprocess.Popen, float]:
    argv = [sys.executable, "-m", "segcli", "serve", "--model", args.model, "--device", args.device,
            "--precision", args.precision, "--port", str(port), "--max-batch", str(args.max_batch),
            "--max-pending", str(4 * args.clients + 8), "-q", *extra]
    began = time.perf_counter()
    with log.open("w") as handle:  # its own session: SIGKILL to the group on failure takes Ray's processes too
        child = subprocess.Popen(argv, stderr=handle, start_new_session=True)
    while time.perf_counter() - began < 600:
        if child.poll() is not None:
            raise SystemExit(f"segcli serve exited {child.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return child, time.perf_counter() - began
        except OSError:
            time.sleep(0.25)
    os.killpg(child.pid, signal.SIGKILL)
    raise SystemExit(f"segcli serve did not start within 600 s: {log.read_text()}")


def measure(args, extra: list[str], images: list[bytes], work: Path) -> dict:
    port = free_port()
    child, startup = start(args, extra, port, work / "serve.log")
    url = f"http://127.0.0.1:{port}/v1/segment?outputs=label"
    try:
        for data in images[:4] * 2:  # warm-up (both replicas, most likely), not counted
            post(url, data)
        result = load(url, images, args.clients, args.seconds)
    finally:
        stopping = time.perf_counter()
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    result.update(startup_s=round(startup, 1), stop_s=round(time.perf_counter() - stopping, 1),
                  exit=child.returncode)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lraspp")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--images", type=Path, default=REPO / "samples" / "synth" / "JPEGImages")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "serve_ray_load")
    args = parser.parse_args()
    images = [path.read_bytes() for path in sorted(args.images.glob("*.jpg"))]
    report = {"command": "python benchmarks/serve_ray_load.py " + shlex.join(sys.argv[1:]), "cpu": cpu_name(),
              "cores": os.cpu_count(), "load_before": load_average(), "runs": {}}
    for name, extra in CONFIGS.items():
        with tempfile.TemporaryDirectory(prefix="serve-ray-load-") as work:
            report["runs"][name] = measure(args, extra, images, Path(work))
    report["load_after"] = load_average()
    answers = [run.pop("answers") for run in report["runs"].values()]
    report["labels_equal"] = all(answer == answers[0] for answer in answers[1:])
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report, args, len(images)))
    print(args.out.with_suffix(".md").read_text())


def markdown(report: dict, args, image_count: int) -> str:
    lines = [f"# segcli serve: local against Ray Serve ({args.model}, {args.device})", "",
             f"    {report['command']}", "",
             f"CPU: {report['cpu']}; {report['cores']} cores, shared with other jobs; load average before "
             f"{report['load_before']}, after {report['load_after']}; {image_count} JPEG images (samples/synth); "
             f"{args.clients} clients for {args.seconds:g} s each, max batch {args.max_batch}; labels equal across "
             f"the runs: {report['labels_equal']}.", "",
             "| server | start-up s | images/s | p50 ms | p99 ms | errors | stop s (SIGTERM) | exit |",
             "|---|---|---|---|---|---|---|---|"]
    for name, run in report["runs"].items():
        lines.append(f"| {name} | {run['startup_s']} | {run['images_per_s']} | {run['latency_p50_ms']} | "
                     f"{run['latency_p99_ms']} | {sum(run['errors'].values())} | {run['stop_s']} | {run['exit']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
