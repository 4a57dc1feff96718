"""`segcli predict scene.tif`: the raster path from the command line (exit codes, files, refusals)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from raster_support import scene, write_raster
from robustness_support import assert_no_traceback, files_under, run_predict


def _read(path):
    with rasterio.open(path) as dataset:
        return dataset.read(1), dataset.crs, dataset.transform, (dataset.width, dataset.height), dataset.tags()


def test_geotiff_gives_label_geotiff_and_json(make_raster, tmp_path, tiny_checkpoint):
    path, _ = make_raster()
    out = tmp_path / "out"
    result = run_predict([path], out, tiny_checkpoint, "--tile", "64")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert files_under(out) == {"scene.tif", "scene.json"}
    labels, crs, transform, size, tags = _read(out / "scene.tif")
    with rasterio.open(path) as src:
        assert (crs, transform, size) == (src.crs, src.transform, (src.width, src.height))
    summary = json.loads((out / "scene.json").read_text())
    assert summary["raster"]["crs"] == "EPSG:32633" and summary["raster"]["georeferenced"] is True
    assert sum(entry["pixels"] for entry in summary["classes"]) == labels.size == 150 * 217
    assert "1 segmented" in result.stderr


def test_plain_tiff_keeps_the_image_pipeline(tmp_path, tiny_checkpoint):
    path = write_raster(tmp_path / "photo.tif", scene(40, 50), crs=None)
    result = run_predict([path], tmp_path / "out", tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert "photo.png" in files_under(tmp_path / "out")


def test_output_over_the_input_is_refused(make_raster, tmp_path, tiny_checkpoint):
    path, _ = make_raster()
    before = path.read_bytes()
    result = run_predict([path], tmp_path, tiny_checkpoint)
    assert result.exit_code == 1
    assert "is an input of this run" in result.stderr and result.stderr.startswith("Error: ")
    assert path.read_bytes() == before and files_under(tmp_path) == {"scene.tif"}


def test_existing_outputs_need_overwrite_and_foreign_files_are_kept(make_raster, tmp_path, tiny_checkpoint):
    path, _ = make_raster()
    out = tmp_path / "out"
    assert run_predict([path], out, tiny_checkpoint).exit_code == 0
    again = run_predict([path], out, tiny_checkpoint)
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    assert run_predict([path], out, tiny_checkpoint, "--overwrite").exit_code == 0
    assert run_predict([path], out, tiny_checkpoint, "--skip-existing").stderr.count("1 skipped") == 1
    (out / "scene.tif").write_bytes(b"someone else's file")
    foreign = run_predict([path], out, tiny_checkpoint, "--overwrite")
    assert foreign.exit_code == 1 and "not written by segcli" in foreign.stderr
    assert (out / "scene.tif").read_bytes() == b"someone else's file"


@pytest.mark.parametrize("flags", [("--tta",), ("--tile", "off"), ("--outputs", "overlay"),
                                   ("--bands", "1,2"), ("--scale", "5,1")])
def test_what_the_raster_path_cannot_do_is_a_usage_error(make_raster, tmp_path, tiny_checkpoint, flags):
    path, _ = make_raster()
    result = run_predict([path], tmp_path / "out", "/nonexistent/weights.safetensors", *flags)
    assert result.exit_code == 2, result.output  # before the (missing) weights are looked at
    assert not (tmp_path / "out").exists()


def test_raster_flags_on_plain_images_are_a_usage_error(tmp_path, tiny_checkpoint):
    from PIL import Image

    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    assert run_predict([tmp_path / "a.png"], tmp_path / "out", tiny_checkpoint, "--cog").exit_code == 2


def test_16bit_4band_stretch_and_band_choice(tmp_path, tiny_checkpoint):
    data = scene(60, 70, bands=4, dtype=np.uint16)
    path = write_raster(tmp_path / "multi.tif", data)
    result = run_predict([path], tmp_path / "out", tiny_checkpoint, "--bands", "4,3,2")
    assert result.exit_code == 0, result.output
    scaling = json.loads((tmp_path / "out" / "multi.json").read_text())["scaling"]
    assert [rule["band"] for rule in scaling] == [4, 3, 2]
    for rule in scaling:  # 70 px wide: the decimated read is the whole band
        band = data[rule["band"] - 1].astype(np.float64)
        assert rule["low"] == pytest.approx(np.percentile(band, 2)) and rule["high"] == pytest.approx(np.percentile(band, 98))


def test_rgb_rows_follow_the_stated_scaling(tmp_path):
    from segcli.raster.source import RasterSource

    data = scene(30, 40, bands=3, dtype=np.uint16)
    path = write_raster(tmp_path / "s.tif", data)
    source = RasterSource.open(path, bands=(2,), scale=(1000.0, 11200.0))
    rgb, valid = source.rows(0, 30)
    source.close()
    # the JSON summary records the rule in words a Python caller (scale=) and the CLI (--scale) share
    assert source.scaling == [{"band": 2, "low": 1000.0, "high": 11200.0, "rule": "given scale"}] * 3  # R, G, B
    expected = np.clip(np.rint((data[1] - 1000.0) * 255.0 / 10200.0), 0, 255).astype(np.uint8)
    assert valid.all() and all((rgb[..., channel] == expected).all() for channel in range(3))


def test_ungeoreferenced_raster_works_and_says_so(tmp_path, tiny_checkpoint):
    path = write_raster(tmp_path / "plain.tif", scene(40, 50), crs=None)
    result = run_predict([path], tmp_path / "out", tiny_checkpoint, "--bands", "1,2,3")
    assert result.exit_code == 0, result.output
    assert "no georeferencing" in result.stderr
    assert "no georeferencing" in json.loads((tmp_path / "out" / "plain.json").read_text())["note"]


def test_a_bad_raster_fails_alone(tmp_path, tiny_checkpoint):
    three = write_raster(tmp_path / "three.tif", scene(30, 30, bands=3))
    four = write_raster(tmp_path / "four.tif", scene(30, 30, bands=4))
    result = run_predict([three, four], tmp_path / "out", tiny_checkpoint, "--bands", "4")
    assert result.exit_code == 1
    assert "failed: " in result.stderr and "three.tif" in result.stderr
    assert files_under(tmp_path / "out") == {"four.tif", "four.json"}


def test_cog_output(make_raster, tmp_path, tiny_checkpoint):
    path, _ = make_raster()
    result = run_predict([path], tmp_path / "out", tiny_checkpoint, "--cog")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / "scene.tif") as out, rasterio.open(path) as src:
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert (out.crs, out.transform) == (src.crs, src.transform)
        assert "segcli_labels" in out.tags() and out.colormap(1)[255] == (0, 0, 0, 0)
    assert files_under(tmp_path / "out") == {"scene.tif", "scene.json"}  # no temporaries left


def test_plain_tiff_above_the_pixel_limit_takes_the_raster_path(tmp_path, tiny_checkpoint):
    path = write_raster(tmp_path / "big.tif", scene(40, 50), crs=None)
    result = run_predict([path], tmp_path / "out", tiny_checkpoint, "--max-pixels", "1999")
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path / "out") == {"big.tif", "big.json"}


def test_an_empty_output_left_by_a_crash_is_redone_by_skip_existing(make_raster, tmp_path, tiny_checkpoint):
    path, _ = make_raster()
    out = tmp_path / "out"
    assert run_predict([path], out, tiny_checkpoint).exit_code == 0
    (out / "scene.tif").write_bytes(b"")
    result = run_predict([path], out, tiny_checkpoint, "--skip-existing")
    assert result.exit_code == 0 and "1 segmented" in result.stderr
    assert (out / "scene.tif").stat().st_size > 0


def test_without_rasterio_one_line_with_the_pip_hint(make_raster, tmp_path, monkeypatch):
    import sys

    path, _ = make_raster()
    monkeypatch.setitem(sys.modules, "rasterio", None)  # `import rasterio` raises ImportError
    result = run_predict([path], tmp_path / "out", "/nonexistent/weights.safetensors", "--bands", "1,2,3")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["Error: rasters need rasterio: pip install 'segcli[geo]' "
                                                  "(or pip install rasterio)"]
