"""`predict --engine ray` on a local 2-CPU Ray instance, started once for the module (Ray starts slowly on 2 cores)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from robustness_support import CPU_FLAGS, random_rgb, run_predict, segcli_subprocess

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'segcli[ray]'")

pytestmark = pytest.mark.slow  # one Ray instance per module, ~15 s to start here


def make_folder(root: Path, count: int, broken: bool = True) -> Path:
    for index in range(count):
        path = root / ("sub" if index % 3 == 1 else "") / f"img{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_rgb(32 + 8 * (index % 2), 40, seed=index)).save(path)
    if broken:
        (root / "broken.jpg").write_bytes(b"not an image")
    return root


def complete_sets(out: Path, temporaries_allowed: bool = False) -> dict[str, dict]:
    """Image path -> its JSON summary (written last: the mark of a complete set), for every set under `out`."""
    if not temporaries_allowed:
        assert not list(out.rglob(".*.tmp")), "a temporary file was left behind"
    return {(document := json.loads(path.read_text()))["image"]: document for path in out.rglob("*.json")}


def test_ray_engine_writes_what_the_local_engine_writes(tmp_path, ray_instance, checkpoint, assert_same_outputs):
    folder = make_folder(tmp_path / "in", 5)
    local = run_predict([folder], tmp_path / "local", checkpoint)
    distributed = run_predict([folder], tmp_path / "ray", checkpoint, "--engine", "ray", "--batch-size", "2")
    assert (local.exit_code, distributed.exit_code) == (1, 1), distributed.output
    assert f"failed: {folder / 'broken.jpg'} is not an image segcli can read" in distributed.stderr
    assert distributed.stderr.strip().splitlines()[-1].startswith("5 segmented, 1 failed in ")
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")  # label PNGs, overlays, JSON (timings aside)


def test_a_partial_run_with_leftovers_is_resumed_by_skip_existing(tmp_path, ray_instance, checkpoint):
    folder = make_folder(tmp_path / "in", 6, broken=False)
    out = tmp_path / "out"
    first = run_predict([folder / "img0.png", folder / "img2.png"], out, checkpoint, "--engine", "ray")
    assert first.exit_code == 0, first.output
    # what a killed run leaves: a set cut off before its JSON, and a temporary of a set being written
    assert run_predict([folder / "img3.png"], out, checkpoint).exit_code == 0
    (out / "img3.json").unlink()
    (out / ".img5.png.0123abcd.tmp").write_bytes(b"half a PNG")
    kept = {name: (out / name).stat().st_mtime_ns for name in ("img0.json", "img2.json")}

    rerun = run_predict([folder], out, checkpoint, "--engine", "ray", "--skip-existing")
    assert rerun.exit_code == 0, rerun.output
    assert rerun.stderr.strip().splitlines()[-1].startswith("4 segmented, 2 skipped (outputs exist) in ")
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept  # done once, not again
    assert sorted(complete_sets(out)) == sorted(str(path) for path in folder.rglob("*.png"))


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (Ray's actors start their own sessions, so a process group misses them)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def kill_tree(root: int) -> None:
    """SIGKILL to `root` and its descendants, then wait until none of them runs (no write may land later).

    The tree is frozen first (SIGSTOP), so a worker the raylet starts meanwhile is caught too.
    """
    for pid in process_tree(root):
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    tree = process_tree(root)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while any(map(running, tree)) and time.monotonic() < deadline:
        time.sleep(0.1)


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed child stays a zombie until it is waited for)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc to kill the whole run")
def test_a_killed_ray_run_resumes_with_skip_existing(tmp_path, ray_instance, checkpoint):
    """SIGKILL to an `--engine ray` run mid-run: the driver, its Ray instance and its actors, all at once."""
    count = 60  # enough that a quiet machine is still writing sets when the kill lands (12 were all done in time)
    folder = make_folder(tmp_path / "in", count, broken=False)
    out = tmp_path / "out"
    args = ["predict", str(folder), "--model", "lraspp", "--weights", str(checkpoint), "--out", str(out),
            *CPU_FLAGS, "--engine", "ray", "--ray-workers", "1"]
    child = segcli_subprocess(args)
    try:
        deadline = time.monotonic() + 240
        while not list(out.rglob("*.json")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        kill_tree(child.pid)
        child.communicate(timeout=60)
    done_before = complete_sets(out, temporaries_allowed=True) if out.exists() else {}
    assert 0 < len(done_before) < count, "the kill came before the first set or after the last"
    kept = {path: path.stat().st_mtime_ns for path in out.rglob("*.json")}

    rerun = run_predict([folder], out, checkpoint, "--engine", "ray", "--skip-existing")
    assert rerun.exit_code == 0, rerun.output
    assert rerun.stderr.strip().splitlines()[-1].startswith(
        f"{count - len(done_before)} segmented, {len(done_before)} skipped (outputs exist) in ")
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # each image done once
    sets = complete_sets(out)
    assert sorted(sets) == sorted(str(path) for path in folder.rglob("*.png"))
    for document in sets.values():  # every set whole: its label PNG decodes at the image's size
        with Image.open(Path(out, Path(document["image"]).relative_to(folder)).with_suffix(".png")) as label:
            assert list(label.size) == document["size"]


def test_a_ray_run_says_what_a_local_run_says_and_nothing_of_rays_own(tmp_path):
    """-q with the shipped synthetic-scenes checkpoint: the Warning line the local engine prints, the final line,
    and neither Ray's log lines (its C++ side writes to the driver's stderr) nor escape codes."""
    folder = make_folder(tmp_path / "in", 2, broken=False)
    child = segcli_subprocess(["predict", str(folder), "--model", "lraspp", "--out", str(tmp_path / "out"),
                               *CPU_FLAGS, "--engine", "ray", "--ray-workers", "1", "-q"])
    _, stderr = child.communicate(timeout=240)
    assert child.returncode == 0, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith("Warning: lraspp-mobilenet-synth was trained only on segcli's synthetic scenes")
    assert lines[1].startswith("2 segmented in ")
    assert "\x1b" not in stderr
