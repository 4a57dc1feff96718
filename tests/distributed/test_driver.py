"""The driver's own pieces, without Ray: worker counts, joining errors, the stop count, the piped progress lines."""

from __future__ import annotations

import io
import os
import time

import pytest
from PIL import Image
from rich.console import Console

from robustness_support import random_rgb
from segcli.distributed.progress import RunProgress
from segcli.distributed.run import (DistributedRunError, _count_planned_outcomes, _count_sets_landed_unreported, _default_workers, planned_names,
                                    ray_session)
from segcli.distributed.settings import ClusterOptions, WorkerRange
from segcli.inputs import scan_inputs
from segcli.outputs.plan import OutputOptions
from segcli.pipeline.run import FolderRun, RunSummary


class FakeRay:
    """What `ray_session` and `_default_workers` use of the `ray` module."""

    def __init__(self, resources=None, init_error=None):
        self.resources, self.init_error = resources or {"CPU": 8.0}, init_error
        self.calls: list = []

    def is_initialized(self):
        return False

    def init(self, **options):
        self.calls.append(("init", options))
        if self.init_error:
            raise self.init_error

    def shutdown(self):
        self.calls.append(("shutdown", {}))

    def cluster_resources(self):
        return self.resources


def test_default_workers_follow_the_cluster_cpus_or_gpu_shares():
    ray = FakeRay({"CPU": 32.0, "GPU": 4.0})
    assert _default_workers(ray, ClusterOptions()) == WorkerRange(1, 32)
    assert _default_workers(ray, ClusterOptions(gpus_per_worker=0.5)) == WorkerRange(1, 8)
    with pytest.raises(DistributedRunError, match="per worker leave no room for a worker"):
        _default_workers(FakeRay({"CPU": 4.0}), ClusterOptions(gpus_per_worker=1))


def test_a_cluster_that_cannot_be_reached_is_one_line_and_nothing_is_left_running():
    ray = FakeRay(init_error=ConnectionError("could not connect\nto 10.0.0.1:10001"))
    with pytest.raises(DistributedRunError) as caught:
        with ray_session(ray, ClusterOptions(address="ray://10.0.0.1:10001")):
            pass
    assert str(caught.value) == "cannot start or reach the Ray cluster at ray://10.0.0.1:10001: to 10.0.0.1:10001"
    assert [name for name, _ in ray.calls] == ["init"]


def test_a_local_instance_gets_the_cpus_the_workers_need_and_is_shut_down():
    ray = FakeRay()
    with ray_session(ray, ClusterOptions(workers=WorkerRange(1, 64))) as workers:
        assert workers == WorkerRange(1, 64)
    (name, options), shutdown = ray.calls
    assert (name, options["address"], options["num_cpus"], shutdown[0]) == ("init", "local", 64, "shutdown")


def test_after_a_stop_sets_landed_during_the_run_count_as_written(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(random_rgb(16, 16, seed=index)).save(folder / f"img{index}.png")
    out = tmp_path / "out"
    run = FolderRun(OutputOptions(out_dir=out), scan_inputs([str(folder)], exclude=[out]).sources)
    out.mkdir()
    (out / "img0.json").write_text("{}")               # an older file: not this run's
    os.utime(out / "img0.json", (1, 1))
    since = time.time() - 1
    (out / "img1.json").write_text("{}")               # landed after the run started, its row never came
    summary = RunSummary(written=[])
    _count_sets_landed_unreported(run, summary, since)
    assert summary.written == [folder / "img1.png"]
    assert planned_names(run)[out] >= {"img0.png", "img0_overlay.png", "img0.json", "img2.json"}


def test_an_output_the_plan_refuses_is_a_failed_line_with_its_command_line_hint(tmp_path):
    """The plan gives the reason (library terms) and the hint; a Ray run's `failed:` line, like a local run's,
    says both."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(random_rgb(16, 16, seed=0)).save(folder / "img0.png")
    out.mkdir()
    (out / "img0.png").write_bytes(b"the user's own mask")
    run = FolderRun(OutputOptions(out_dir=out, overwrite=True), scan_inputs([str(folder)], exclude=[out]).sources)
    summary, stream = RunSummary(), io.StringIO()
    with RunProgress(Console(file=stream, force_terminal=False, width=300), total=1) as progress:
        _count_planned_outcomes(run, summary, progress)
    expected = f"{out / 'img0.png'} exists and was not written by segcli: not replaced; move it or choose another --out"
    assert summary.failed == [(folder / "img0.png", expected)]
    assert f"failed: {expected}" in stream.getvalue().splitlines()


def test_piped_progress_prints_plain_lines_with_failures_named():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=200)
    with RunProgress(console, total=3) as progress:
        progress.done()
        progress.failed("/data/b.jpg is not an image segcli can read (unknown format)")
        progress.done(segmented=False)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("1/3 images, 0 failed, ")
    assert lines[1] == "failed: /data/b.jpg is not an image segcli can read (unknown format)"
    assert lines[2].startswith("2/3 images, 1 failed, ") and lines[3].startswith("3/3 images, 1 failed, ")
    assert len(lines) == 4 and "\x1b" not in stream.getvalue()


def test_on_a_terminal_one_bar_and_the_failures_above_it():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=200)
    with RunProgress(console, total=2) as progress:
        progress.failed("/data/b.jpg is not an image segcli can read (unknown format)")
        progress.done()
    text = stream.getvalue()
    assert "/data/b.jpg is not an image segcli can read" in text
    assert "images, " not in text  # no plain progress lines on a terminal


def test_rows_a_retried_block_hands_back_twice_are_counted_once():
    from segcli.distributed.run import _collect

    class Rows:
        def __init__(self, rows):
            self.rows = rows

        def iter_rows(self):
            return iter(self.rows)

    class Exceptions:
        RayError = RuntimeError

    class Ray:
        exceptions = Exceptions

    row = {"path": "/in/a.png", "status": "ok", "message": "", "timings": "{}"}
    other = dict(row, path="/in/b.png")
    summary = RunSummary()
    with RunProgress(Console(file=io.StringIO()), 2) as progress:
        _collect(Ray, Rows([row, other, row]), summary, progress)
    assert [str(path) for path in summary.written] == ["/in/a.png", "/in/b.png"]
    assert progress.finished == 2


@pytest.mark.parametrize("address, expected", [
    ("auto", "auto"), ("10.0.0.1:6379", "10.0.0.1:6379"), (" head.local:6379 ", "head.local:6379"),
    ("ray://10.0.0.1:10001", "ray://10.0.0.1:10001"),
])
def test_ray_addresses_as_ray_start_prints_them_are_accepted(address, expected):
    from segcli.distributed.settings import parse_ray_address

    assert parse_ray_address(address) == expected


@pytest.mark.parametrize("address", ["10.0.0.1", "http://x:1", "host:port", ":6379", "ray://"])
def test_other_ray_addresses_are_usage_errors(tmp_path, address):
    from click.testing import CliRunner

    from segcli.cli.main import cli

    result = CliRunner().invoke(cli, ["predict", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "ray",
                                      "--ray-address", address])
    assert result.exit_code == 2, result.output
    assert "HOST:PORT" in result.output
