"""The GPU check: the execution policy, real-sized benchmark rows and folder throughput, in under 9 minutes.

Run by benchmarks/gpu_check.sh (settings there). Steps, each time-boxed, each a subprocess:
  tests    pytest: the policy, device-side labels, the engine's policy per batch shape,
           tests/cuda/test_execution_cuda.py
  policy   the execution policy's trial per (model, size, batch): every candidate's time, the choice,
           the trial's seconds, then the same key again from the cache      -> gpu-policy-<card>.{json,md}
  real     `segcli benchmark --device cuda`: deeplabv3-resnet50/101, fcn-resnet50 (torchvision layouts),
           deeplabv3p-resnet101 (VainF), deeplabv2 (kazuto1011), random weights, 512x512, batch 1/8/32,
           fp32/bf16/fp16: img/s, TFLOP/s, share of the GPU's dense peak  -> gpu-real-<card>.{json,md}
  memory   `segcli benchmark` at 512, batch 1, of the models whose peak read 39 GB / 20 GB before
                                                                             -> gpu-memory-<card>.{json,md}
  lanes    benchmarks/pipeline_lanes.py: folder images/s, one thread vs the old 4x2 vs auto vs 8x8,
           label PNGs byte-identical across schedules                        -> gpu-lanes-<card>.{json,md}
REHEARSAL=1 runs every step on the CPU at toy sizes. A step is a success only when its command exits 0
and wrote what it should; a step skipped (out of time, or a pytest skip) is a failure. Exit status:
0 when every step succeeded, 1 otherwise. gpu-check-<card>.{json,md} sum it up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_MODELS = "deeplabv3-resnet50,deeplabv3-resnet101,fcn-resnet50,deeplabv3p-resnet101,deeplabv2"
TESTS = ["tests/test_execution_policy.py", "tests/test_device.py", "tests/test_engine_policy.py",
         "tests/pipeline/test_device_labels.py", "tests/cuda/test_execution_cuda.py"]


def settings(rehearsal: bool) -> dict:
    """Per step: its time box (s) and its sizes; the rehearsal's are toys on the CPU."""
    if rehearsal:
        # a quiet 2-core CPU needs about 3 minutes; the boxes leave room for a loaded one
        return {"device": "cpu", "boxes": {"tests": 400, "policy": 400, "real": 900, "memory": 300, "lanes": 300},
                "policy_cases": [("lraspp", 64, 1)],
                "real": ["--sizes", "64", "--batches", "1,2", "--precision", "fp32", "--warmup", "0", "--iters", "1"],
                "memory": ["--models", "lraspp", "--sizes", "64", "--precision", "fp32", "--warmup", "0",
                           "--iters", "1"],
                "lanes": ["--model", "lraspp", "--size", "64", "--images", "6", "--rounds", "1",
                          "--schedules", "1x0,auto,2x2"]}
    return {"device": "cuda", "boxes": {"tests": 60, "policy": 120, "real": 210, "memory": 45, "lanes": 80},
            "policy_cases": [("deeplabv3-mobilenet", 512, 1), ("deeplabv3p-mobilenet", 512, 1),
                             ("deeplabv3-mobilenet", 512, 8), ("deeplabv3-resnet50", 512, 1),
                             ("deeplabv3-resnet50", 512, 8)],
            "real": ["--sizes", "512", "--batches", "1,8,32", "--precision", "fp32,bf16,fp16", "--warmup", "3",
                     "--iters", "10"],
            "memory": ["--models", "deeplabv3p-mobilenet,deeplabv3-mobilenet,fcn32s", "--sizes", "512",
                       "--precision", "fp32,bf16", "--warmup", "5", "--iters", "20"],
            "lanes": ["--model", "deeplabv3-mobilenet", "--size", "512", "--images", "96", "--rounds", "2",
                      "--schedules", "1x0,4x2,auto,8x8"]}


class Check:
    def __init__(self, out: Path, rehearsal: bool, seconds: float) -> None:
        self.out, self.rehearsal = out, rehearsal
        self.config = settings(rehearsal)
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.card = "cpu-rehearsal" if rehearsal else card_name()
        self.steps: dict[str, dict] = {}
        self.scratch = tempfile.TemporaryDirectory(prefix="segcli-gpu-check-home-")
        self.home = Path(self.scratch.name)  # SEGCLI_HOME of every step: no user's cache, no checkpoint

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    def run(self, name: str, argv: list[str], expected: list[Path]) -> bool:
        """Run one step; a success is exit 0 and every expected file written and not empty."""
        left = self.deadline - time.monotonic()
        box = min(self.config["boxes"][name], left - 5)
        if box < 10:
            self.steps[name] = {"status": "skipped: out of time (a skip is a failure)"}
            self.say(f"{name}: SKIPPED, out of time")
            return False
        self.say(f"{name}: {' '.join(argv[1:])[:200]}")
        log = self.out / f"gpu-check-{self.card}-{name}.log"
        started = time.monotonic()
        env = {**os.environ, "SEGCLI_HOME": str(self.home), "PYTHONPATH": str(ROOT)}
        with open(log, "w") as handle:
            try:
                code = subprocess.run(argv, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                      timeout=box).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        missing = [path.name for path in expected if not path.is_file() or path.stat().st_size == 0]
        status = "ok" if code == 0 and not missing else f"failed: exit {code}" + (
            f", missing {', '.join(missing)}" if missing else "")
        self.steps[name] = {"status": status, "seconds": round(time.monotonic() - started, 1),
                            "command": argv[1:], "log": log.name}
        self.say(f"{name}: {status} ({self.steps[name]['seconds']} s)")
        return status == "ok"

    def path(self, step: str, suffix: str) -> Path:
        return self.out / f"gpu-{step}-{self.card}.{suffix}"


def card_name() -> str:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: run with REHEARSAL=1 on a machine without one")
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-").replace("nvidia-", "")


def step_tests(check: Check) -> None:
    junit = check.out / f"gpu-check-{check.card}-tests.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *TESTS]
    if check.rehearsal:
        argv += ["-m", "not cuda and not slow"]  # CUDA tests deselected on the CPU (not skipped); quick ones only
    if check.run("tests", argv, [junit]):
        skipped = junit_skips(junit.read_bytes())
        if skipped:
            check.steps["tests"]["status"] = f"failed: {skipped} test(s) skipped (a skip is a failure here)"


def junit_skips(data: bytes) -> int:
    return sum(1 for case in ElementTree.fromstring(data).iter("testcase") if case.find("skipped") is not None)


def step_policy(check: Check) -> None:
    json_path, md_path = check.path("policy", "json"), check.path("policy", "md")
    cases = ",".join(f"{model}:{size}:{batch}" for model, size, batch in check.config["policy_cases"])
    check.run("policy", [sys.executable, str(Path(__file__)), "policy", check.config["device"], cases,
                         str(json_path), str(md_path)], [json_path, md_path])


def step_benchmark(check: Check, name: str, models: list[str]) -> None:
    json_path, md_path = check.path(name, "json"), check.path(name, "md")
    argv = [sys.executable, "-m", "segcli", "benchmark", "--device", check.config["device"], *models,
            *check.config[name], "--no-e2e", "--json", str(json_path), "--markdown", str(md_path)]
    if check.run(name, argv, [json_path, md_path]) and not json.loads(json_path.read_text())["rows"]:
        check.steps[name]["status"] = "failed: no rows"


def step_lanes(check: Check) -> None:
    json_path, md_path = check.path("lanes", "json"), check.path("lanes", "md")
    argv = [sys.executable, str(ROOT / "benchmarks" / "pipeline_lanes.py"), "--device", check.config["device"],
            *check.config["lanes"], "--json", str(json_path), "--markdown", str(md_path)]
    check.run("lanes", argv, [json_path, md_path])


def policy_main(device_name: str, cases_text: str, json_path: str, md_path: str) -> None:
    """The `policy` step, in its own process: the trial per case, then the same key from the cache."""
    import torch

    from segcli.benchmarking.subjects import random_subject
    from segcli.execution_policy import PolicyCache, PolicyKey, candidates_for, choose_execution

    device = torch.device(device_name)
    cache = PolicyCache()
    # the rehearsal keeps to fp32 on the CPU (bf16 without native support takes minutes there)
    candidates = [c for c in candidates_for(device) if device.type == "cuda" or c.precision == "fp32"]
    rows = []
    for case in cases_text.split(","):
        model_name, size, batch = case.split(":")
        subject = random_subject(model_name)
        model = subject.model.eval().to(device)
        example = torch.rand(int(batch), 3, int(size), int(size))
        key = PolicyKey.for_run(subject.name, "random", int(size), int(size), int(batch), device)
        started = time.perf_counter()
        choice = choose_execution(model, example, device, key, cache, candidates=candidates)
        trial_s = time.perf_counter() - started
        started = time.perf_counter()
        again = choose_execution(model, example, device, key, cache, candidates=candidates)
        cached_s = time.perf_counter() - started
        if not again.from_cache or again.candidate != choice.candidate:
            raise SystemExit(f"{case}: the cache did not give the trial's choice back")
        bare = choice.timings_ms["fp32 contiguous"]
        rows.append({"model": subject.name, "size": int(size), "batch": int(batch), "chosen": choice.candidate.label,
                     "chosen_ms": choice.timings_ms[choice.candidate.label], "bare_ms": bare,
                     "time_vs_bare": choice.timings_ms[choice.candidate.label] / bare, "trial_s": trial_s,
                     "cached_s": cached_s, "timings_ms": choice.timings_ms})
        print(f"{case}: {choice.candidate.label} {rows[-1]['time_vs_bare']:.2f}x bare, trial {trial_s:.1f} s",
              flush=True)
        del model, subject
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write_policy(device, rows, json_path, md_path)  # after every case: a step cut short keeps what it measured


def write_policy(device, rows: list[dict], json_path: str, md_path: str) -> None:
    import torch

    report = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "rows": rows}
    Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Execution policy trials ({report['gpu'] or device})", "",
             "| model | size | batch | chosen | chosen ms | bare fp32 ms | time vs bare | trial s | cached s |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['size']} | {r['batch']} | {r['chosen']} | {r['chosen_ms']:.2f} | "
              f"{r['bare_ms']:.2f} | {r['time_vs_bare']:.2f}x | {r['trial_s']:.1f} | {r['cached_s']:.3f} |"
              for r in rows]
    Path(md_path).write_text("\n".join(lines) + "\n")


def summary_markdown(check: Check) -> str:
    lines = [f"# GPU check ({check.card})", "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {step['status']} | {step.get('seconds', '-')} |" for name, step in check.steps.items()]
    for name in ("policy", "real", "memory", "lanes"):
        path = check.path(name, "md")
        if path.is_file():
            lines += ["", f"## {name}", "", path.read_text()]
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "policy":
        policy_main(*sys.argv[2:6])
        return 0
    rehearsal = os.environ.get("REHEARSAL") == "1"
    out = Path(os.environ.get("OUT") or (ROOT / "benchmarks")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, rehearsal, float(os.environ.get("SESSION_SECONDS") or (2400 if rehearsal else 530)))
    step_tests(check)
    step_policy(check)
    step_benchmark(check, "real", ["--models", REAL_MODELS])
    step_benchmark(check, "memory", [])
    step_lanes(check)
    check.scratch.cleanup()
    ok = all(step["status"] == "ok" for step in check.steps.values())
    summary = {"card": check.card, "rehearsal": rehearsal, "ok": ok, "steps": check.steps,
               "seconds": round(time.monotonic() - check.started, 1)}
    check.path("check", "json").write_text(json.dumps(summary, indent=2) + "\n")
    check.path("check", "md").write_text(summary_markdown(check))
    check.say("all steps ok" if ok else "FAILED: " + ", ".join(
        f"{name} ({step['status']})" for name, step in check.steps.items() if step["status"] != "ok"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
