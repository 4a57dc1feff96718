"""benchmarks/gpu_check.sh rehearsed on the CPU (REHEARSAL=1): every step at toy sizes, and a failure or a
skip anywhere makes the check fail."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REAL = {"deeplabv3-resnet50", "deeplabv3-resnet101", "fcn-resnet50", "deeplabv3p-resnet101", "deeplabv2"}


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_skipped_or_failing_step_is_a_failure(tmp_path):
    gpu_check = _gpu_check()
    check = gpu_check.Check(tmp_path, rehearsal=True, seconds=600)
    assert not check.run("tests", [sys.executable, "-c", "raise SystemExit(3)"], [])
    assert check.steps["tests"]["status"] == "failed: exit 3"
    assert not check.run("policy", [sys.executable, "-c", "pass"], [tmp_path / "never-written.json"])
    assert "missing never-written.json" in check.steps["policy"]["status"]
    late = gpu_check.Check(tmp_path, rehearsal=True, seconds=0)
    assert not late.run("lanes", [sys.executable, "-c", "pass"], [])
    assert late.steps["lanes"]["status"].startswith("skipped")
    junit = b'<testsuite><testcase classname="a" name="b"><skipped message="x"/></testcase><testcase/></testsuite>'
    assert gpu_check.junit_skips(junit) == 1


@pytest.mark.slow
def test_the_rehearsal_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "REHEARSAL": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=2500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu-check-cpu-rehearsal.json").read_text())
    assert summary["ok"] and summary["rehearsal"]
    assert {name: step["status"] for name, step in summary["steps"].items()} == dict.fromkeys(
        ["tests", "policy", "real", "memory", "lanes"], "ok")
    real = json.loads((tmp_path / "gpu-real-cpu-rehearsal.json").read_text())["rows"]
    assert {row["model"] for row in real} == REAL and {row["batch"] for row in real} == {1, 2}
    policy = json.loads((tmp_path / "gpu-policy-cpu-rehearsal.json").read_text())["rows"]
    assert all(row["time_vs_bare"] <= 1.0 for row in policy)
    lanes = json.loads((tmp_path / "gpu-lanes-cpu-rehearsal.json").read_text())
    assert lanes["outputs_identical"] and [row["schedule"] for row in lanes["results"]] == ["1x0", "auto", "2x2"]
