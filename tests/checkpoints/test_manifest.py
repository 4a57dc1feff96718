"""The user's manifest and segcli's home folder: concurrent writers, odd SEGCLI_HOME values."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from robustness_support import segcli_subprocess
from segcli.checkpoints.manifest import read_manifest_file

REPO = Path(__file__).resolve().parents[2]

ADD_MANY = textwrap.dedent("""
    import sys
    from segcli.checkpoints.manifest import add_user_record
    from segcli.checkpoints.record import CheckpointRecord

    worker, count = sys.argv[1], int(sys.argv[2])
    for index in range(count):
        name = f"w{worker}-{index}"
        add_user_record(CheckpointRecord(name=name, model="lraspp", dataset="x", categories=("a", "b"),
                                         filename=f"{name}.pth"))
""")


@pytest.mark.slow
def test_concurrent_writers_lose_no_manifest_record(tmp_path):
    """Four processes append 8 records each to one user manifest at the same time."""
    env = dict(os.environ, SEGCLI_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    workers = [subprocess.Popen([sys.executable, "-c", ADD_MANY, str(worker), "8"], env=env,
                                stderr=subprocess.PIPE, text=True) for worker in range(4)]
    errors = [worker.communicate(timeout=120)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4, errors
    names = {record.name for record in read_manifest_file(tmp_path / "home" / "manifest.json")}
    assert names == {f"w{worker}-{index}" for worker in range(4) for index in range(8)}


@pytest.fixture
def checkpoint_file(tmp_path) -> Path:
    path = tmp_path / "f.pth"
    torch.save({"classifier.high_classifier.weight": torch.zeros(21, 4, 1, 1)}, path)
    return path


@pytest.mark.slow  # three CLI processes importing torch: ~35 s on 2 shared cores
def test_concurrent_weights_add_commands_all_land(tmp_path, checkpoint_file):
    home = tmp_path / "home"
    children = [segcli_subprocess(["weights", "add", str(checkpoint_file), "--name", f"mine-{index}", "--model",
                                   "lraspp", "--classes-from", "voc"], env={"SEGCLI_HOME": str(home)})
                for index in range(3)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], outputs
    names = {record.name for record in read_manifest_file(home / "manifest.json")}
    assert names == {"mine-0", "mine-1", "mine-2"}
    assert sorted(path.name for path in (home / "checkpoints").iterdir()) == ["mine-0.pth", "mine-1.pth", "mine-2.pth"]


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


def _segcli(args: list[str], home: str, cwd: Path | None = None, obey_permissions: bool = False,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m segcli ARGS`; `obey_permissions` drops root's power to ignore file modes."""
    env = dict(os.environ, SEGCLI_HOME=home, PYTHONPATH=str(REPO), COLUMNS="200", **(extra_env or {}))
    prefix = AS_ORDINARY_USER if obey_permissions else []
    return subprocess.run([*prefix, sys.executable, "-m", "segcli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_segcli_home_that_is_a_file_gives_one_line_and_reading_still_works(tmp_path, checkpoint_file):
    home_file = tmp_path / "home-file"
    home_file.write_text("not a folder")
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    for args in (["weights", "add", str(checkpoint_file), "--name", "a", "--model", "lraspp", "--classes-from", "voc"],
                 ["weights", "pull", "lraspp-coco"]):
        result = _segcli(args, str(home_file), extra_env=env)
        assert result.returncode == 1, result.stderr
        (line,) = _error_lines(result)
        assert str(home_file) in line and "is a file" in line and "SEGCLI_HOME" in line, line
    assert home_file.read_text() == "not a folder"
    listed = _segcli(["weights", "list"], str(home_file), extra_env=env)
    assert listed.returncode == 0, listed.stderr


def test_relative_segcli_home_is_refused_with_the_absolute_path_it_would_mean(tmp_path, checkpoint_file):
    for args in (["weights", "list"],
                 ["weights", "add", str(checkpoint_file), "--name", "a", "--model", "lraspp", "--classes-from", "voc"]):
        result = _segcli(args, "relative/home", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        (line,) = _error_lines(result)
        assert "SEGCLI_HOME must be an absolute path" in line and str(tmp_path / "relative" / "home") in line
    assert not (tmp_path / "relative").exists()


# root ignores file modes; without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH it obeys them like anyone else
AS_ORDINARY_USER = (["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
                    if os.geteuid() == 0 and shutil.which("setpriv") else [])


@pytest.mark.skipif(os.geteuid() == 0 and not AS_ORDINARY_USER, reason="root without setpriv ignores file modes")
def test_unwritable_and_unreadable_segcli_home_give_one_line(tmp_path, checkpoint_file):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)  # readable, not writable
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    add = ["weights", "add", str(checkpoint_file), "--name", "a", "--model", "lraspp", "--classes-from", "voc"]
    try:
        result = _segcli(add, str(home), obey_permissions=True, extra_env=env)
        assert result.returncode == 1, result.stderr
        (line,) = _error_lines(result)
        assert str(home) in line and "permission" in line.lower() and "SEGCLI_HOME" in line, line
        home.chmod(0o000)  # not even readable: lookups must say so, not crash
        result = _segcli(["weights", "list"], str(home), obey_permissions=True, extra_env=env)
        assert result.returncode == 1, result.stderr
        (line,) = _error_lines(result)
        assert str(home) in line and "permission" in line.lower(), line
    finally:
        home.chmod(0o755)
