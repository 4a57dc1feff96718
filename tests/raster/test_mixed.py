"""Plain images and rasters in one `segcli predict` run: both planned before the model loads, one model load,
outputs checked against each other, one summary line."""

from __future__ import annotations

import json

import pytest
import rasterio
from PIL import Image

from raster_support import assert_only_whole_sets_after_interrupt, interrupt_after_the_first_set, scene, write_raster
from robustness_support import assert_no_traceback, files_under, output_set, random_rgb, run_predict


def _mixed(root):
    """root/in: a GeoTIFF, one in a sub-folder, a photo and a photo in the sub-folder."""
    folder = root / "in"
    (folder / "sub").mkdir(parents=True)
    write_raster(folder / "a.tif", scene(40, 50, seed=1))
    write_raster(folder / "sub" / "b.tiff", scene(30, 60, seed=2))
    Image.fromarray(random_rgb(24, 32, seed=3)).save(folder / "photo.png")
    Image.fromarray(random_rgb(20, 28, seed=4)).save(folder / "sub" / "snap.jpg")
    return folder


def test_a_folder_of_images_and_rasters_runs_both_with_one_model_load(tmp_path, tiny_checkpoint):
    folder = _mixed(tmp_path)
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = run_predict([folder], out, tiny_checkpoint, "--tile", "32")
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output  # broken.jpg failed; the rest is written
    assert files_under(out) == {"a.tif", "a.json", "sub/b.tif", "sub/b.json"} | output_set("photo") \
        | output_set("sub/snap")
    with rasterio.open(out / "a.tif") as labels, rasterio.open(folder / "a.tif") as src:
        assert (labels.crs, labels.transform, labels.shape) == (src.crs, src.transform, src.shape)
    with Image.open(out / "photo.png") as label:
        assert label.size == (32, 24)
    assert json.loads((out / "sub" / "snap.json").read_text())["image"] == str(folder / "sub" / "snap.jpg")
    assert result.stderr.count(str(tiny_checkpoint)) == 1, result.stderr  # one model load, said once
    assert f"failed: {folder / 'broken.jpg'}" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("4 segmented (2 images, 2 rasters), 1 failed in "), last


def test_a_raster_and_an_image_writing_the_same_json_are_refused_before_the_model_loads(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_raster(folder / "a.tif", scene(30, 30, seed=1))
    Image.fromarray(random_rgb(20, 20, seed=2)).save(folder / "a.jpg")
    out = tmp_path / "out"
    result = run_predict([folder], out, tmp_path / "missing.safetensors")
    assert result.exit_code == 1, result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and str(folder / "a.jpg") in error and str(folder / "a.tif") in error
    assert str(out / "a.json") in error
    assert "missing.safetensors" not in result.stderr  # refused before the checkpoint is looked at
    assert not out.exists()


def test_a_mixed_run_keeps_each_parts_rules_for_existing_outputs(tmp_path, tiny_checkpoint):
    folder = _mixed(tmp_path)
    out = tmp_path / "out"
    first = run_predict([folder / "a.tif", folder / "photo.png"], out, tiny_checkpoint, "--tile", "32")
    assert first.exit_code == 0, first.output
    kept = {name: (out / name).stat().st_mtime_ns for name in ("a.json", "photo.json")}

    again = run_predict([folder], out, tiny_checkpoint, "--tile", "32")  # neither flag: refused up front
    assert again.exit_code == 1 and "Error: " in again.stderr, again.output
    assert not (out / "sub").exists()

    resumed = run_predict([folder], out, tiny_checkpoint, "--tile", "32", "--skip-existing")
    assert resumed.exit_code == 0, resumed.output
    last = resumed.stderr.strip().splitlines()[-1]
    assert last.startswith("2 segmented (1 image, 1 raster), 2 skipped (outputs exist) in "), last
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept

    replaced = run_predict([folder], out, tiny_checkpoint, "--tile", "32", "--overwrite", "-q")
    assert replaced.exit_code == 0, replaced.output
    assert replaced.stderr.strip().startswith("4 segmented (2 images, 2 rasters) in ")
    assert all((out / name).stat().st_mtime_ns != mtime for name, mtime in kept.items())


def test_flags_the_rasters_cannot_honour_are_usage_errors_in_a_mixed_run(tmp_path):
    folder = _mixed(tmp_path)
    result = run_predict([folder], tmp_path / "out", tmp_path / "missing.safetensors", "--outputs", "overlay")
    assert result.exit_code == 2, result.output
    assert "--outputs overlay" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_raster_output_that_is_an_image_input_is_refused_before_the_model_loads(tmp_path):
    """in/a.tif (a GeoTIFF) would write out/a.tif, named on the command line as a plain (small, no CRS) TIFF:
    the raster plan's existing-file rule refuses it, and the image is left as it was."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_raster(folder / "a.tif", scene(30, 30, seed=1))
    out = tmp_path / "out"
    out.mkdir()
    write_raster(out / "a.tif", scene(20, 20, seed=2), crs=None)
    before = (out / "a.tif").read_bytes()
    result = run_predict([folder, out / "a.tif"], out, tmp_path / "missing.safetensors")
    assert result.exit_code == 1, result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: {out / 'a.tif'} exists and was not written by segcli: not replaced")
    assert (out / "a.tif").read_bytes() == before and files_under(out) == {"a.tif"}


def test_outputs_polygons_applies_to_the_rasters_of_a_mixed_run_only(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    write_raster(folder / "a.tif", scene(30, 30, seed=1))
    Image.fromarray(random_rgb(20, 20, seed=2)).save(folder / "photo.png")
    out = tmp_path / "out"
    result = run_predict([folder], out, tiny_checkpoint, "--tile", "32", "--outputs", "label,polygons")
    assert result.exit_code == 0, result.output
    assert files_under(out) == {"a.tif", "a.json", "a.geojson", "photo.png"}  # the image: its label only


@pytest.mark.parametrize("second", [False, True], ids=["once", "twice"])
def test_ctrl_c_stops_a_local_raster_run_between_rasters(tmp_path, tiny_checkpoint, second):
    """The local engine (no Ray): the raster being written finishes, no other starts, exit 130, one last line;
    a second Ctrl-C a second later stops at once, and nothing of the raster it cut off is left."""
    from robustness_support import CPU_FLAGS, segcli_subprocess

    count = 40 if not second else 8
    folder = tmp_path / "in"
    folder.mkdir()
    write_raster(folder / "a.tif", scene(32, 32, seed=99))  # first, quick: its JSON says the run is going
    for index in range(count - 1):
        size = 480 if second else 96
        write_raster(folder / f"r{index:02d}.tif", scene(size, size, seed=index))
    out = tmp_path / "out"
    child = segcli_subprocess(["predict", str(folder), "--model", "lraspp", "--weights", str(tiny_checkpoint),
                               "--out", str(out), *CPU_FLAGS, "--tile", "32"], env={"COLUMNS": "1000"})
    stderr = interrupt_after_the_first_set(child, out, twice=second, wait_s=120, poll_s=0.01)
    assert_only_whole_sets_after_interrupt(child, stderr, out, count)
