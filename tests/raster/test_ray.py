"""Rasters with `--engine ray` on a local 2-CPU Ray instance, started once for the module."""

from __future__ import annotations

import json
import signal
import time

import pytest
import rasterio

from raster_support import assert_only_whole_sets_after_interrupt, interrupt_after_the_first_set, scene, write_raster
from robustness_support import CPU_FLAGS, assert_no_traceback, files_under, run_predict, segcli_subprocess

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'segcli[ray]'")

pytestmark = pytest.mark.slow  # one Ray instance per module, ~15 s to start here


def _label(path):
    with rasterio.open(path) as dataset:
        return {"pixels": dataset.read(), "crs": dataset.crs, "transform": dataset.transform,
                "tags": dataset.tags(), "colormap": dataset.colormap(1), "profile": dict(dataset.profile)}


def test_rasters_on_ray_actors_write_what_the_local_run_writes(tmp_path, ray_instance, tiny_checkpoint):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write_raster(folder / "a.tif", scene(70, 90, seed=1))
    write_raster(folder / "sub" / "b.tif", scene(50, 40, seed=2), crs="EPSG:4326",
                 transform=rasterio.transform.from_origin(10.0, 50.0, 0.001, 0.001))
    write_raster(folder / "c.tif", scene(40, 40, bands=1, seed=3))
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    flags = ("--tile", "32", "--outputs", "polygons")
    local = run_predict([folder], tmp_path / "local", tiny_checkpoint, *flags)
    distributed = run_predict([folder], tmp_path / "ray", tiny_checkpoint, *flags, "--engine", "ray")
    assert_no_traceback(distributed)
    assert (local.exit_code, distributed.exit_code) == (1, 1), distributed.output
    assert "3 segmented, 1 failed" in distributed.stderr and "failed: " in distributed.stderr
    assert files_under(tmp_path / "ray") == files_under(tmp_path / "local") == {
        f"{name}.{suffix}" for name in ("a", "sub/b", "c") for suffix in ("tif", "json", "geojson")}
    for name in ("a", "sub/b", "c"):
        here, there = _label(tmp_path / "local" / f"{name}.tif"), _label(tmp_path / "ray" / f"{name}.tif")
        assert (here.pop("pixels") == there.pop("pixels")).all()
        assert here == there
        assert (tmp_path / "local" / f"{name}.tif").read_bytes() == (tmp_path / "ray" / f"{name}.tif").read_bytes()
        polygons = [json.loads((tmp_path / run / f"{name}.geojson").read_text()) for run in ("local", "ray")]
        assert polygons[0] == polygons[1]
        summaries = [json.loads((tmp_path / run / f"{name}.json").read_text()) for run in ("local", "ray")]
        for document in summaries:
            document.pop("seconds"), document.pop("megapixels_per_second")
        assert summaries[0] == summaries[1]


def test_skip_existing_on_ray_keeps_the_complete_rasters(tmp_path, ray_instance, tiny_checkpoint):
    write_raster(tmp_path / "a.tif", scene(30, 30, seed=4))
    write_raster(tmp_path / "b.tif", scene(30, 30, seed=5))
    out = tmp_path / "out"
    first = run_predict([tmp_path / "a.tif"], out, tiny_checkpoint, "--engine", "ray")
    assert first.exit_code == 0, first.output
    again = run_predict([tmp_path / "a.tif", tmp_path / "b.tif"], out, tiny_checkpoint, "--engine", "ray",
                        "--skip-existing")
    assert again.exit_code == 0 and "1 segmented, 1 skipped" in again.stderr, again.output
    assert files_under(out) == {"a.tif", "a.json", "b.tif", "b.json"}


@pytest.mark.parametrize("number, code, word", [(signal.SIGINT, 130, "Interrupted"),
                                                (signal.SIGTERM, 143, "Terminated")])
def test_a_signal_stops_a_ray_raster_run_between_rasters(tmp_path, tiny_checkpoint, number, code, word):
    """Ctrl-C or SIGTERM to the driver once the first raster is written: the rasters in hand finish, no more start,
    every set on disk is whole, no temporary is left, one line says how many, exit 130/143."""
    count = 40
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(count):
        write_raster(folder / f"r{index:02d}.tif", scene(96, 96, seed=index))
    out = tmp_path / "out"
    child = segcli_subprocess(["predict", str(folder), "--model", "lraspp", "--weights", str(tiny_checkpoint),
                               "--out", str(out), *CPU_FLAGS, "--tile", "32", "--engine", "ray",
                               "--ray-workers", "1"], env={"COLUMNS": "1000"})
    deadline = time.monotonic() + 240
    while not list(out.glob("*.json")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, f"finished before the signal: {child.communicate()}"
    child.send_signal(number)
    _, stderr = child.communicate(timeout=240)
    assert child.returncode == code, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"{word}: ") and " segmented in " in last, stderr
    done = int(last.split()[1])
    assert 1 <= done < count, last
    stems = {name[:-len(".json")] for name in files_under(out) if name.endswith(".json")}
    assert len(stems) == done
    assert files_under(out) == {f"{stem}.{suffix}" for stem in stems for suffix in ("tif", "json")}  # no .tmp
    for stem in stems:  # whole: the label GeoTIFF reads back at the raster's size
        with rasterio.open(out / f"{stem}.tif") as labels:
            assert labels.read(1).shape == (96, 96)


def test_a_mixed_folder_on_ray_runs_the_images_and_the_rasters(tmp_path, ray_instance, tiny_checkpoint):
    from PIL import Image

    from robustness_support import output_set, random_rgb

    folder = tmp_path / "in"
    folder.mkdir()
    write_raster(folder / "a.tif", scene(40, 40, seed=6))
    Image.fromarray(random_rgb(24, 32, seed=7)).save(folder / "photo.png")
    out = tmp_path / "out"
    result = run_predict([folder], out, tiny_checkpoint, "--tile", "32", "--engine", "ray")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert files_under(out) == {"a.tif", "a.json"} | output_set("photo")
    assert result.stderr.strip().splitlines()[-1].startswith("2 segmented (1 image, 1 raster) in "), result.stderr


def test_a_second_ctrl_c_stops_a_ray_raster_run_at_once_leaving_only_whole_sets(tmp_path, tiny_checkpoint):
    """Two Ctrl-Cs at once while big rasters are in hand: the actors are stopped mid-raster; what they were
    writing is removed (no label GeoTIFF without its JSON, no temporary), and the count is the sets on disk."""
    count = 12
    folder = tmp_path / "in"
    folder.mkdir()
    write_raster(folder / "a.tif", scene(32, 32, seed=1))  # segmented first: its JSON says the run is going
    for index in range(count - 1):
        write_raster(folder / f"r{index:02d}.tif", scene(480, 480, seed=index))
    out = tmp_path / "out"
    child = segcli_subprocess(["predict", str(folder), "--model", "lraspp", "--weights",
                               str(tiny_checkpoint), "--out", str(out), *CPU_FLAGS, "--tile", "32", "--engine",
                               "ray", "--ray-workers", "2"], env={"COLUMNS": "1000"})
    stderr = interrupt_after_the_first_set(child, out, twice=True, wait_s=240, poll_s=0.02)
    assert_only_whole_sets_after_interrupt(child, stderr, out, count)
