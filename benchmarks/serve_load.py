"""Load test: N concurrent clients for T seconds against `segcli serve`, and the same images through one
warm `segcli predict` folder run, on this machine's loopback only.

- served: a fresh `segcli serve` process on a free 127.0.0.1 port; after a warm-up (a few requests, not
  counted), CLIENTS threads each POST the images one after another (`outputs=label`, the raw body) for
  SECONDS; throughput = label PNGs answered 200 per second; latency p50/p99 of those; errors counted.
  Bounded: at most MAX_REQUESTS requests, each with a 60 s timeout; the server is stopped with SIGTERM.
- folder: `segcli predict FOLDER --outputs label` over enough copies of the images to take about as
  long; steady throughput = (labels written - 1) / (time the last landed - time the first landed),
  from the label files' modification times, so imports and the model load are left out ("warm").
Both run with the same model, device and precision, and write the same label PNGs (bytes checked).

    python benchmarks/serve_load.py                                  # deeplabv3p, 4 clients, 20 s
    python benchmarks/serve_load.py --model lraspp --clients 2 --seconds 5 --out /tmp/serve_load

Writes OUT.json (every figure) and OUT.md (the table, with this command at the top).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from segcli.benchmarking.measure import time_call

from folder_speed import cpu_name, load_average, write_report  # this folder is on sys.path when a script here runs

REPO = Path(__file__).resolve().parent.parent
MAX_REQUESTS = 100_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, data: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    call = urllib.request.Request(url, data=data, headers={"Content-Type": "image/jpeg"}, method="POST")
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:  # refused, reset, timed out: an error of the run, counted
        return 0, str(exc).encode()


def start_server(args, port: int, log: Path) -> subprocess.Popen:
    """`segcli serve` on PORT, its messages in LOG (a pipe nobody reads could fill and stall it)."""
    argv = [sys.executable, "-m", "segcli", "serve", "--model", args.model, "--device", args.device,
            "--precision", args.precision, "--port", str(port), "--max-batch", str(args.max_batch),
            "--batch-wait-ms", str(args.batch_wait_ms), "--max-pending", str(4 * args.clients + 8), "-q"]
    with log.open("w") as handle:
        child = subprocess.Popen(argv, stderr=handle)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"segcli serve exited {child.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return child
        except OSError:
            time.sleep(0.25)
    child.kill()
    raise SystemExit(f"segcli serve did not start within 600 s: {log.read_text()}")


def load(url: str, images: list[bytes], clients: int, seconds: float) -> dict:
    """CLIENTS threads posting for SECONDS: latencies of the 200s, error statuses, and the answers seen."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    answers: dict[int, bytes] = {}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    count = [0]

    def client(offset: int) -> None:
        index = offset
        while time.perf_counter() < stop_at:
            with lock:
                if count[0] >= MAX_REQUESTS:
                    return
                count[0] += 1
            timing = time_call(lambda: post(url, images[index % len(images)]))
            (status, body), elapsed = timing.result, timing.wall_ms / 1000.0
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                    answers.setdefault(index % len(images), body)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            index += 1

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(clients)]
    def run_all() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    wall = time_call(run_all).wall_ms / 1000.0
    ordered = sorted(latencies)
    return {"requests_ok": len(latencies), "errors": errors, "wall_s": round(wall, 3),
            "images_per_s": round(len(latencies) / wall, 3),
            "latency_p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
            "latency_p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)
            if ordered else None, "answers": answers}


def served(args, images: list[bytes], work: Path) -> dict:
    port = free_port()
    child = start_server(args, port, work / "serve.log")
    url = f"http://127.0.0.1:{port}/v1/segment?outputs=label"
    try:
        for data in images[:4]:  # warm-up, not counted
            post(url, data)
        result = load(url, images, args.clients, args.seconds)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            metrics = answer.read().decode()
        result["batch_sizes"] = [line for line in metrics.splitlines() if line.startswith("segcli_batch_size_")]
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
    result["server_exit"] = child.returncode
    return result


def folder_run(args, sources: list[Path], count: int, work: Path) -> dict:
    """One `segcli predict` over COUNT copies of the images (label only); steady images/s from the files' times."""
    folder, out = work / "images", work / "out"
    folder.mkdir()
    for index in range(count):
        source = sources[index % len(sources)]
        shutil.copyfile(source, folder / f"{index:04d}_{source.name}")
    argv = [sys.executable, "-m", "segcli", "predict", str(folder), "--model", args.model, "--device", args.device,
            "--precision", args.precision, "--out", str(out), "--outputs", "label", "-q"]
    wall = time_call(lambda: subprocess.run(argv, check=True, timeout=1800)).wall_ms / 1000.0
    times = sorted(path.stat().st_mtime_ns for path in out.glob("*.png"))
    steady = (len(times) - 1) / ((times[-1] - times[0]) / 1e9)
    labels = {path.stem.split("_", 1)[1]: path.read_bytes() for path in sorted(out.glob("*.png"))[:len(sources)]}
    return {"images": len(times), "wall_s": round(wall, 3), "images_per_s": round(steady, 3), "labels": labels}


def markdown(report: dict) -> str:
    lines = [f"# segcli serve under load vs a warm `segcli predict` folder run ({report['model']}, {report['device']})",
             "", f"    {report['command']}", "",
             f"CPU: {report['cpu']}; {report['cores']} cores; load average before {report['load_before']}, "
             f"after {report['load_after']}; images: {report['image_count']} x {report['image_size']} JPEG "
             f"(samples/synth); served labels equal the folder run's: {report['labels_equal']}. Served: "
             f"{report['clients']} clients for {report['seconds']:g} s, max batch {report['max_batch']}, wait "
             f"{report['batch_wait_ms']} ms; folder: as many images as the served run answered.", "",
             "| round | run | images/s | p50 ms | p99 ms | errors | notes |", "|---|---|---|---|---|---|---|"]
    for number, (served_row, folder_row) in enumerate(zip(report["served"], report["folder"]), 1):
        batches = {line.split()[0]: line.split()[1] for line in served_row["batch_sizes"]}
        mean_batch = float(batches["segcli_batch_size_sum"]) / max(1.0, float(batches["segcli_batch_size_count"]))
        lines += [f"| {number} | serve | {served_row['images_per_s']} | {served_row['latency_p50_ms']} | "
                  f"{served_row['latency_p99_ms']} | {sum(served_row['errors'].values())} | {served_row['requests_ok']} "
                  f"answered, mean batch {mean_batch:.2f}; exit {served_row['server_exit']} after SIGTERM |",
                  f"| {number} | predict folder (warm) | {folder_row['images_per_s']} | | | | {folder_row['images']} "
                  f"images, {folder_row['wall_s']} s with start-up |"]
    lines += ["", f"Best served / best folder throughput: **{report['ratio']}** (goal >= 0.9). Runs alternate, the "
                  "order reversed every other round; the machine is shared, so the load average says how much the "
                  "figures can be trusted.", ""]
    return "\n".join(lines)


def one_round(args, sources: list[Path], images: list[bytes], reverse: bool) -> tuple[dict, dict]:
    """A served run and a folder run over as many images (in the other order when `reverse`)."""
    with tempfile.TemporaryDirectory(prefix="serve-load-") as work:
        work = Path(work)
        if reverse:
            folder = folder_run(args, sources, args.folder_images, work)
            return served(args, images, work), folder
        served_result = served(args, images, work)
        count = args.folder_images or max(len(sources) * 2, min(2000, served_result["requests_ok"]))
        args.folder_images = count  # later rounds use the same count
        return served_result, folder_run(args, sources, count, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deeplabv3p")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--images", type=Path, default=REPO / "samples" / "synth" / "JPEGImages")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "serve_load")
    args = parser.parse_args()
    args.folder_images = 0
    sources = sorted(args.images.glob("*.jpg"))
    images = [path.read_bytes() for path in sources]
    before = load_average()
    rounds = [one_round(args, sources, images, reverse=number % 2 == 1) for number in range(args.rounds)]
    served_rows, folder_rows = [row for row, _ in rounds], [row for _, row in rounds]
    served_labels = {sources[index].stem: data for row in served_rows for index, data in row.pop("answers").items()}
    folder_labels = {name: data for row in folder_rows for name, data in row.pop("labels").items()}
    from PIL import Image

    with Image.open(sources[0]) as first:
        size = f"{first.width}x{first.height}"
    best_served = max(row["images_per_s"] for row in served_rows)
    best_folder = max(row["images_per_s"] for row in folder_rows)
    report = {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "model": args.model,
              "device": args.device, "precision": args.precision, "clients": args.clients, "seconds": args.seconds,
              "max_batch": args.max_batch, "batch_wait_ms": args.batch_wait_ms, "cpu": cpu_name(),
              "cores": os.cpu_count(), "image_count": len(sources), "image_size": size,
              "load_before": before, "load_after": load_average(), "served": served_rows, "folder": folder_rows,
              "labels_equal": bool(served_labels) and all(folder_labels.get(name) == data
                                                          for name, data in served_labels.items()),
              "ratio": round(best_served / best_folder, 3)}
    write_report(report, args.out, markdown)


if __name__ == "__main__":
    main()
