"""training/gpu_session.sh rehearsed on the CPU (REHEARSAL=1): every stage, every lane, the packing of
$OUT within the device's limits, then training/scripts/import_gpu_results.py into a scratch repository."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "training" / "scripts"
NO_GPU = "needs a CUDA GPU (torch.cuda.is_available() is False)"  # tests/cuda/conftest.py's skip reason


def cuda_stage_problems(junit: bytes, gpu: bool) -> list[str]:
    """What is wrong with stage (a)'s JUnit report: a skip is a success only where there is no GPU, and then
    only for that reason (a test skipped for anything else - a missing part, a broken import - is a problem)."""
    cases = ElementTree.fromstring(junit).iter("testcase")
    problems, count = [], 0
    for case in cases:
        count += 1
        name = f"{case.get('classname')}::{case.get('name')}"
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            problems.append(f"{name} failed")
        elif skipped is not None and (gpu or skipped.get("message", "") != NO_GPU):
            problems.append(f"{name} skipped: {skipped.get('message')}")
    return problems if count else ["no CUDA test ran"]


def load_script(name: str):
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


def test_lanes_are_unique_and_fit_the_returned_files():
    session = load_script("gpu_session")
    names = [lane.name for lane in session.LANES]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9.-]+", name) for name in names)  # names of files under $OUT
    # every lane's stem is one register_shipped.py records
    shipped = load_script("register_shipped").SHIPPED
    assert {lane.stem for lane in session.LANES} <= set(shipped)
    assert all(shipped[lane.stem] == lane.model for lane in session.LANES)


def test_card_names_for_benchmark_files():
    session = load_script("gpu_session")
    assert session.card_name({"gpu": "NVIDIA H100 80GB HBM3"}) == "h100"
    assert session.card_name({"gpu": "NVIDIA H200"}) == "h200"
    assert session.card_name({"gpu": None}) == "cpu"


def test_the_cuda_stage_skips_only_for_want_of_a_gpu(tmp_path):
    """Stage (a) as the session runs it (`pytest -m cuda tests/cuda`), its report read as the rehearsal reads it."""
    import torch

    junit = tmp_path / "cuda.xml"
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "tests/cuda", "-q", "-p", "no:cacheprovider",
                             f"--junitxml={junit}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    gpu = torch.cuda.is_available()
    assert cuda_stage_problems(junit.read_bytes(), gpu=gpu) == []
    # and the reader refuses what a green exit code hides: skips with a GPU, skips for another reason, no tests
    assert cuda_stage_problems(junit.read_bytes(), gpu=True) != [] or gpu
    other = b'<testsuites><testsuite><testcase classname="t" name="a"><skipped message="could not import ' \
            b'\'pydensecrf\'"/></testcase></testsuite></testsuites>'
    assert cuda_stage_problems(other, gpu=False) == ["t::a skipped: could not import 'pydensecrf'"]
    assert cuda_stage_problems(b"<testsuites><testsuite/></testsuites>", gpu=False) == ["no CUDA test ran"]


@pytest.mark.slow
def test_rehearsal_runs_every_stage_and_its_results_import(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, REHEARSAL="1", OUT=str(out), WORK=str(tmp_path / "work"), PYTHONPATH=str(ROOT),
               PYTHON=sys.executable)
    result = subprocess.run(["bash", str(ROOT / "training" / "gpu_session.sh")], env=env, capture_output=True,
                            text=True, timeout=2400)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    files = sorted(path for path in out.rglob("*") if path.is_file())
    # what the device tool returns: at most 8 files, under 16 MiB each, plain names, no partial files
    assert len(files) <= 8 and all(path.stat().st_size < 16 * 2**20 for path in files)
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", path.name) for path in files)
    with tarfile.open(out / "results.tar.gz") as archive:
        session = json.load(archive.extractfile("results/session.json"))
        members = set(archive.getnames())
        junit = archive.extractfile("results/pytest-cuda.xml").read()
    assert session["stages"]["cuda_tests"]["exit_code"] == 0
    # no GPU here: every CUDA test skips, for that reason and no other; with a GPU, none may skip
    import torch

    assert cuda_stage_problems(junit, gpu=torch.cuda.is_available()) == []
    assert session["stages"]["benchmark"]["exit_code"] == 0
    assert {"results/benchmarks/gpu-cpu.json", "results/benchmarks/gpu-cpu.png"} <= members
    assert session["stages"]["crf"]["exit_code"] == 0
    assert {"results/benchmarks/crf-cpu.json", "results/benchmarks/crf-cpu.md"} <= members
    lanes = {lane.name: lane for lane in load_script("gpu_session").LANES}
    assert set(session["lanes"]) == set(lanes)
    for name, facts in session["lanes"].items():
        assert facts["status"] == "done", (name, facts)
        assert 0.0 <= facts["held_out_miou"] <= 1.0 and facts["iterations"] >= 1
    packed = {member for volume in out.glob("weights-*.tar") for member in tarfile.open(volume).getnames()}
    assert packed == {f"{name}.safetensors" for name in lanes}
    check_import(out, tmp_path / "repo", lanes)


def check_import(out: Path, root: Path, lanes: dict) -> None:
    (root / "segcli" / "weights").mkdir(parents=True)
    shutil.copy2(ROOT / "segcli" / "weights" / "manifest.json", root / "segcli" / "weights" / "manifest.json")
    shutil.copy2(ROOT / "README.md", root / "README.md")
    report = load_script("import_gpu_results").import_session(out, root, force=True)
    assert any(line.startswith("shipped weights:") for line in report)
    manifest = json.loads((root / "segcli" / "weights" / "manifest.json").read_text())
    records = {record["name"]: record for record in manifest["checkpoints"]} if isinstance(manifest, dict) else \
        {record["name"]: record for record in manifest}
    for stem in {lane.stem for lane in lanes.values()}:
        checkpoint = root / "segcli" / "weights" / f"{stem}.safetensors"
        assert records[stem]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        assert "training/gpu_session.sh" in records[stem]["notes"]
        assert f"| `{stem}` |" in (root / "README.md").read_text()
        assert (root / "training" / "results" / f"{stem}.eval.json").is_file()
    assert (root / "benchmarks" / "gpu-cpu.json").is_file()
    assert (root / "training" / "logs" / "gpu-session" / "SUMMARY.txt").is_file()
    assert {path.name for path in (root / "training" / "results" / "gpu-session").iterdir()} == \
        {f"{name}.eval.json" for name in lanes}
