"""One GPU session, end to end, inside a fixed wall-clock budget; everything it makes lands under $OUT.

Run by `training/gpu_session.sh` (see there for the settings). Stages, in order:
  (a) `pytest -m cuda tests/cuda`                      -> results: pytest-cuda.log, pytest-cuda.xml
  (b) `segcli benchmark --device cuda`, 512 and 1024   -> results: benchmarks/gpu-<card>.{json,md,png}
  (b') the dense CRF in torch on CUDA, 512/1024/2048 px -> results: benchmarks/crf-<card>.{json,md}
       (benchmarks/crf_speed.py --torch-cuda; a rehearsal runs its CPU rows, --torch-cpu, instead)
  (c) training lanes, several at once on the one GPU   -> results: lanes/<lane>/{train.log, eval.json, ...}
      each from the shipped weights (or from scratch), on synth scenes generated here while (a) and (b)
      run, time-boxed (`segcli train --time-budget`), then `segcli evaluate` on the held-out draw.
$OUT gets results.tar.gz (rewritten as each stage or lane finishes, so a session killed at its limit
still returns what was done), weights-N.tar (checkpoints, packed as lanes finish, each under 15 MiB)
and SUMMARY.txt. `training/scripts/import_gpu_results.py` puts them into the repository.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VOLUME_BYTES = 15 * 2**20      # one returned file is at most 16 MiB
MAX_VOLUMES = 6                # results.tar.gz + SUMMARY.txt + these: at most 8 returned files


from gpu_lanes import LANES, Lane, Settings  # noqa: E402  (this folder is on sys.path when run as a script)


class Session:
    """The clock, the folders, the log and the packing of $OUT."""

    def __init__(self, settings: Settings, out: Path, work: Path) -> None:
        self.settings, self.out, self.work = settings, out, work
        self.started = time.monotonic()
        self.deadline = self.started + settings.seconds
        self.results = work / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        self.summary: dict = {"settings": asdict(settings), "stages": {}, "lanes": {}}
        self.lock = threading.Lock()
        self.volumes: list[list[tuple[str, Path]]] = []
        self.running: set[subprocess.Popen] = set()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {text}", flush=True)

    def run(self, argv: list[str], log: Path, timeout: float, env: dict | None = None) -> tuple[int, float]:
        """Run a command with its output in `log`; SIGTERM at `timeout` (or the session's end), then SIGKILL."""
        timeout = max(1.0, min(timeout, self.left() - 5))
        started = time.monotonic()
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as handle:
            process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                       env=env or child_environment())
            with self.lock:
                self.running.add(process)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGTERM)  # segcli train saves its state and exits 130
                try:
                    code = process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    code = process.wait()
            finally:
                with self.lock:
                    self.running.discard(process)
        return code, time.monotonic() - started

    def record_stage(self, name: str, **facts) -> None:
        with self.lock:
            self.summary["stages"][name] = facts
        self.pack_results()

    def record_lane(self, name: str, **facts) -> None:
        with self.lock:
            self.summary["lanes"][name] = facts
        self.pack_results()

    def pack_results(self) -> None:
        """results.tar.gz from everything under results/, written beside and renamed (never half there)."""
        with self.lock:
            (self.results / "session.json").write_text(json.dumps(self.summary, indent=2) + "\n")
            partial = self.out / ".results.tar.gz.partial"
            with tarfile.open(partial, "w:gz") as archive:
                archive.add(self.results, arcname="results")
            os.replace(partial, self.out / "results.tar.gz")

    def pack_checkpoint(self, lane: str, checkpoint: Path) -> str | None:
        """Add `lane.safetensors` to the first weights volume with room; returns the volume's name."""
        size = checkpoint.stat().st_size
        if size > VOLUME_BYTES:
            return None
        with self.lock:
            for index, members in enumerate(self.volumes):
                if sum(path.stat().st_size for _, path in members) + size <= VOLUME_BYTES:
                    break
            else:
                if len(self.volumes) >= MAX_VOLUMES:
                    return None
                self.volumes.append([])
                index = len(self.volumes) - 1
            self.volumes[index].append((f"{lane}.safetensors", checkpoint))
            name = f"weights-{index + 1}.tar"
            partial = self.out / f".{name}.partial"
            with tarfile.open(partial, "w") as archive:
                for member, path in self.volumes[index]:
                    archive.add(path, arcname=member)
            os.replace(partial, self.out / name)
            return name

    def stop_everything(self) -> None:
        with self.lock:
            for process in self.running:
                process.send_signal(signal.SIGTERM)


def child_environment(threads: int = 1) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))


def segcli(*args: str) -> list[str]:
    return [sys.executable, "-m", "segcli", *args]


def machine_facts(settings: Settings) -> dict:
    facts = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    probe = ("import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.cuda.is_available(), "
             "'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    facts.update(json.loads(result.stdout) if result.returncode == 0 else {"probe_error": result.stderr[-500:]})
    smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True) if _has("nvidia-smi") else None
    facts["nvidia_smi"] = smi.stdout.strip() if smi is not None else None
    return facts


def _has(program: str) -> bool:
    from shutil import which

    return which(program) is not None


def card_name(facts: dict) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; the CPU in a rehearsal."""
    match = re.search(r"\b([A-Z]\d{2,4}[A-Z]?)\b", facts.get("gpu") or "")
    return match.group(1).lower() if match else "cpu"


def start_data(session: Session) -> list[tuple[subprocess.Popen, Path]]:
    """The training draw (seed 1) and the held-out draw (seed 2), written in the background."""
    settings, data = session.settings, session.work / "data"
    jobs = [("train", ["--seed", "1", "--n", str(settings.train_scenes), "--val-fraction", "0.02",
                       "--workers", str(settings.data_workers)]),
            ("test", ["--seed", "2", "--n", str(settings.test_scenes), "--val-fraction", "1.0", "--workers", "2"])]
    started = []
    for name, args in jobs:
        log = session.results / f"data-{name}.log"
        handle = open(log, "w")
        process = subprocess.Popen(segcli("data", "synth", "--out", str(data / name), "--size", settings.scene_size,
                                          *args), stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env=child_environment())
        started.append((process, data / name))
    return started


def stage_cuda_tests(session: Session) -> None:
    log, junit = session.results / "pytest-cuda.log", session.results / "pytest-cuda.xml"
    argv = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/cuda", "-q", "-rA", "-s", "-p", "no:cacheprovider",
            f"--junitxml={junit}"]
    code, seconds = session.run(argv, log, session.settings.pytest_timeout, child_environment(threads=4))
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
    session.record_stage("cuda_tests", exit_code=code, seconds=round(seconds, 1), result=tail[0] if tail else "")
    session.say(f"(a) pytest -m cuda: exit {code} in {seconds:.0f} s: {tail[0] if tail else 'no output'}")


def stage_benchmark(session: Session, card: str) -> None:
    folder = session.results / "benchmarks"
    folder.mkdir(exist_ok=True)
    stem = folder / f"gpu-{card}"
    argv = segcli("benchmark", "--device", session.settings.device, *session.settings.benchmark_args,
                  "--json", f"{stem}.json", "--markdown", f"{stem}.md", "--plot", f"{stem}.png")
    code, seconds = session.run(argv, session.results / "benchmark.log", session.settings.benchmark_timeout,
                                child_environment(threads=4))
    written = sorted(path.name for path in folder.glob(f"gpu-{card}.*"))
    session.record_stage("benchmark", exit_code=code, seconds=round(seconds, 1), files=written)
    session.say(f"(b) segcli benchmark --device {session.settings.device}: exit {code} in {seconds:.0f} s, "
                f"wrote {', '.join(written) or 'nothing'}")


def stage_crf(session: Session, card: str) -> None:
    """benchmarks/crf_speed.py: the torch CRF on the GPU against pydensecrf's reference on one CPU core."""
    folder = session.results / "benchmarks"
    folder.mkdir(exist_ok=True)
    stem = folder / f"crf-{card}"
    where = ["--torch-cpu", "--images", "1", "--repeats", "1"] if session.settings.rehearsal else ["--torch-cuda"]
    argv = [sys.executable, "benchmarks/crf_speed.py", "--cases", "none", *where,
            "--json", f"{stem}.json", "--markdown", f"{stem}.md"]
    code, seconds = session.run(argv, session.results / "crf.log", session.settings.benchmark_timeout,
                                child_environment(threads=4))
    written = sorted(path.name for path in folder.glob(f"crf-{card}.*"))
    session.record_stage("crf", exit_code=code, seconds=round(seconds, 1), files=written)
    session.say(f"(b') torch CRF benchmark: exit {code} in {seconds:.0f} s, wrote {', '.join(written) or 'nothing'}")


def wait_for_data(session: Session, jobs: list[tuple[subprocess.Popen, Path]]) -> bool:
    for process, folder in jobs:
        try:
            code = process.wait(timeout=max(1.0, session.left() - 60))
        except subprocess.TimeoutExpired:
            process.kill()
            code = -9
        if code != 0 or not (folder / "dataset.json").is_file():
            session.say(f"data in {folder} failed (exit {code}); see results/data-*.log")
            return False
    session.say(f"data ready: {session.settings.train_scenes} training scenes, {session.settings.test_scenes} held out")
    return True


def lane_commands(session: Session, lane: Lane, budget: float) -> tuple[list[str], list[str], Path]:
    settings, data = session.settings, session.work / "data"
    checkpoint = session.work / "lanes" / lane.name / f"{lane.stem}.safetensors"
    train = segcli("train", "--model", lane.model, "--data", str(data / "train"), "--out", str(checkpoint),
                   "--batch-size", str(settings.batch or lane.batch), "--lr", str(lane.lr), "--warmup", str(lane.warmup),
                   "--crop", settings.crop, "--scale-range", settings.scale_range, "--device", settings.device,
                   "--precision", lane.precision, "--time-budget", f"{budget:.0f}", "--save-every", "500",
                   "--augment-on", "device", "--bn-batches", str(settings.bn_batches), "--seed", "7", "--overwrite")
    if settings.iters_cap:
        train += ["--iters", str(settings.iters_cap)]
    if lane.init:
        train += ["--weights", lane.init]
    for key, value in lane.kwargs.items():
        train += ["--model-kwarg", f"{key}={value}"]
    evaluate = segcli("evaluate", "--model", lane.model, "--weights", str(checkpoint), "--data", str(data / "test"),
                      "--split", "val", "--device", settings.device, "--precision", "fp32",
                      "--json", str(session.results / "lanes" / lane.name / "eval.json"))
    return train, evaluate, checkpoint


def run_lane(session: Session, lane: Lane) -> None:
    """Train (time-boxed), evaluate on the held-out draw, pack the checkpoint; every step logged."""
    folder = session.results / "lanes" / lane.name
    folder.mkdir(parents=True, exist_ok=True)
    budget = session.left() - session.settings.lane_reserve
    if session.settings.train_budget:
        budget = min(budget, session.settings.train_budget)
    if budget < 20:
        session.record_lane(lane.name, status="skipped: no time left")
        return
    train, evaluate, checkpoint = lane_commands(session, lane, budget)
    (folder / "lane.json").write_text(json.dumps({"lane": asdict(lane), "train": train, "evaluate": evaluate,
                                                  "time_budget": round(budget)}, indent=2) + "\n")
    session.say(f"lane {lane.name}: training for up to {budget:.0f} s")
    code, seconds = session.run(train, folder / "train.log", budget + session.settings.lane_reserve - 15,
                                child_environment(threads=1))
    facts = {"train_exit": code, "train_seconds": round(seconds, 1), **_train_facts(folder / "train.log")}
    if code != 0 or not checkpoint.is_file():
        session.record_lane(lane.name, status="training failed", **facts)
        session.say(f"lane {lane.name}: training exit {code}; see results/lanes/{lane.name}/train.log")
        return
    volume = session.pack_checkpoint(lane.name, checkpoint)
    code, seconds = session.run(evaluate, folder / "eval.log", max(10.0, session.left() - 8), child_environment(2))
    held_out = _read_miou(folder / "eval.json")
    facts.update(eval_exit=code, held_out_miou=held_out, volume=volume,
                 size_mb=round(checkpoint.stat().st_size / 1e6, 2))
    session.record_lane(lane.name, status="done" if held_out is not None else "evaluation failed", **facts)
    session.say(f"lane {lane.name}: {facts.get('iterations')} iterations, val mIoU {facts.get('val_miou')}, "
                f"held-out mIoU {held_out} -> {volume}")


def _train_facts(log: Path) -> dict:
    text = log.read_text(errors="replace") if log.is_file() else ""
    facts: dict = {}
    if match := re.search(r"after (\d+) iterations, (\d+) s of training", text):
        facts["iterations"], facts["fit_seconds"] = int(match.group(1)), int(match.group(2))
    if match := re.search(r"^val: mIoU ([0-9.]+)", text, re.MULTILINE):
        facts["val_miou"] = float(match.group(1))
    if match := re.findall(r"iter \d+/\d+ loss ([0-9.]+)", text):
        facts["last_loss"] = float(match[-1])
    return facts


def _read_miou(path: Path) -> float | None:
    try:
        return round(float(json.loads(path.read_text())["miou"]), 4)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stage_training(session: Session, lanes: list[Lane]) -> None:
    """Lanes `parallel` at a time, each in its own thread and process; the session's deadline bounds them."""
    queue = list(lanes)
    active: list[threading.Thread] = []
    while queue or active:
        active = [thread for thread in active if thread.is_alive()]
        while queue and len(active) < session.settings.parallel:
            lane = queue.pop(0)
            thread = threading.Thread(target=run_lane, args=(session, lane), name=lane.name, daemon=True)
            thread.start()
            active.append(thread)
        time.sleep(0.5)
        if session.left() < 3:
            session.say("session time is up: stopping what still runs")
            session.stop_everything()
            break


def selected_lanes() -> list[Lane]:
    chosen = [name.strip() for name in os.environ.get("LANES", "").split(",") if name.strip()]
    if not chosen:
        return list(LANES)
    by_name = {lane.name: lane for lane in LANES}
    unknown = [name for name in chosen if name not in by_name]
    if unknown:
        raise SystemExit(f"unknown lane(s) {', '.join(unknown)}; lanes: {', '.join(by_name)}")
    return [by_name[name] for name in chosen]


def write_summary(session: Session) -> None:
    lines = [f"GPU session: {session.summary.get('machine', {}).get('gpu')}, {session.elapsed():.0f} s",
             *(f"  {name}: {facts}" for name, facts in session.summary["stages"].items()),
             "lane | status | iterations | val mIoU | held-out mIoU | MB | volume"]
    for name, facts in session.summary["lanes"].items():
        lines.append(f"{name} | {facts.get('status')} | {facts.get('iterations')} | {facts.get('val_miou')} | "
                     f"{facts.get('held_out_miou')} | {facts.get('size_mb')} | {facts.get('volume')}")
    text = "\n".join(lines) + "\n"
    (session.results / "SUMMARY.txt").write_text(text)
    (session.out / "SUMMARY.txt").write_text(text)
    session.pack_results()
    print(text, flush=True)


def main() -> int:
    settings = Settings.from_environment()
    out = Path(os.environ.get("OUT") or ROOT / "gpu-out").resolve()
    work = Path(os.environ.get("WORK") or "/tmp/segcli-gpu-session").resolve()
    session = Session(settings, out, work)
    lanes = selected_lanes()
    facts = machine_facts(settings)
    session.summary["machine"] = facts
    session.say(f"{'rehearsal on the CPU' if settings.rehearsal else 'GPU session'}: {facts}")
    if not settings.rehearsal and not facts.get("cuda"):
        session.say("no CUDA GPU visible: nothing to do (REHEARSAL=1 runs every stage on the CPU)")
        session.pack_results()
        return 2
    jobs = start_data(session)
    stage_cuda_tests(session)
    stage_benchmark(session, card_name(facts))
    stage_crf(session, card_name(facts))
    if wait_for_data(session, jobs):
        stage_training(session, lanes)
    write_summary(session)
    return 0


if __name__ == "__main__":
    sys.exit(main())
