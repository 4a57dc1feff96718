"""`--engine ray` options: parsing, bad combinations (exit 2), and the one-line hint when Ray is missing. No Ray starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from robustness_support import random_rgb, run_predict
from segcli.distributed.settings import ClusterOptions, WorkerRange
from segcli.errors import SegcliError


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    Image.fromarray(random_rgb(32, 40)).save(path)
    return path


@pytest.mark.parametrize("text, expected", [("3", (3, 3)), ("1,8", (1, 8)), (" 2 , 2 ", (2, 2))])
def test_workers_parse_fixed_and_ranges(text, expected):
    workers = WorkerRange.parse(text)
    assert (workers.minimum, workers.maximum) == expected


@pytest.mark.parametrize("text", ["0", "4,2", "a", "1,2,3", "-1", ""])
def test_workers_refuse_what_is_not_n_or_min_max(text):
    with pytest.raises(SegcliError):
        WorkerRange.parse(text)


def test_images_per_call_follow_the_local_schedule_unless_given():
    assert ClusterOptions().images_per_call() == 1
    assert ClusterOptions(gpus_per_worker=0.5).images_per_call() == 4
    assert ClusterOptions(gpus_per_worker=1, batch_size=16).images_per_call() == 16


@pytest.mark.parametrize("extra, needle", [
    (["--ray-workers", "2"], "--ray-workers needs --engine ray"),
    (["--ray-address", "auto"], "--ray-address needs --engine ray"),
    (["--engine", "ray", "--io-workers", "1"], "--io-workers is for the local engine"),
    (["--engine", "ray", "--ray-workers", "3,1"], "MIN <= MAX"),
])
def test_bad_combinations_are_usage_errors(tmp_path, checkpoint, image, extra, needle):
    result = run_predict([image], tmp_path / "out", checkpoint, *extra)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert not (tmp_path / "out").exists()


def test_without_ray_the_engine_says_what_to_install(tmp_path, checkpoint, image, monkeypatch):
    for name in [name for name in sys.modules if name == "ray" or name.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = run_predict([image], tmp_path / "out", checkpoint, "--engine", "ray")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: running on Ray needs Ray Data: pip install 'segcli[ray]' (or pip install 'ray[data]'); "
        "--engine ray needs it"]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_start_up_does_not_import_ray():
    code = "import sys, segcli.cli.main, segcli.cli.predict; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False"]
