"""Rasters found in folders and globs: which files go the raster way, outputs planned up front, --skip-existing."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from PIL import Image

from raster_support import scene, write_raster
from robustness_support import assert_no_traceback, files_under, run_predict


def _folder(root):
    """Two GeoTIFFs (one in a sub-folder) under root/in."""
    folder = root / "in"
    (folder / "sub").mkdir(parents=True)
    write_raster(folder / "a.tif", scene(40, 50, seed=1))
    write_raster(folder / "sub" / "b.tiff", scene(30, 60, seed=2))
    return folder


def test_a_folder_of_geotiffs_goes_the_raster_way_keeping_sub_folders(tmp_path, tiny_checkpoint):
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    result = run_predict([folder], out, tiny_checkpoint, "--tile", "32")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert files_under(out) == {"a.tif", "a.json", "sub/b.tif", "sub/b.json"}
    for name, source in (("a.tif", folder / "a.tif"), ("sub/b.tif", folder / "sub" / "b.tiff")):
        with rasterio.open(out / name) as labels, rasterio.open(source) as src:
            assert (labels.crs, labels.transform, labels.shape) == (src.crs, src.transform, src.shape)
            assert "segcli_labels" in labels.tags()
    assert "2 segmented" in result.stderr


def test_a_glob_of_geotiffs_and_an_earlier_runs_labels_are_not_inputs(tmp_path, tiny_checkpoint):
    folder = _folder(tmp_path)
    first = run_predict([folder / "a.tif"], folder / "old", tiny_checkpoint)  # label GeoTIFF inside the folder
    assert first.exit_code == 0, first.output
    result = run_predict([str(folder / "**" / "*.tif*")], tmp_path / "out", tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path / "out") == {"a.tif", "a.json", "sub/b.tif", "sub/b.json"}
    assert "outputs of an earlier segcli run" in result.stderr


def test_a_folder_without_rasters_keeps_the_image_pipeline(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    write_raster(folder / "photo.tif", scene(30, 40), crs=None)
    Image.new("RGB", (20, 20)).save(folder / "b.png")
    result = run_predict([folder], tmp_path / "out", tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert {"photo.png", "b.png"} <= files_under(tmp_path / "out")


def test_a_bad_raster_in_a_folder_fails_alone(tmp_path, tiny_checkpoint):
    folder = _folder(tmp_path)
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    result = run_predict([folder], tmp_path / "out", tiny_checkpoint)
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "broken.tif" in failed[0]
    assert files_under(tmp_path / "out") == {"a.tif", "a.json", "sub/b.tif", "sub/b.json"}
    assert "2 segmented, 1 failed" in result.stderr


def test_two_rasters_that_would_share_outputs_are_refused_before_the_model_loads(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_raster(folder / "a.tif", scene(20, 20))
    write_raster(folder / "a.tiff", scene(20, 20))
    result = run_predict([folder], tmp_path / "out", "/nonexistent/weights.safetensors")
    assert result.exit_code == 1 and "would both write" in result.stderr
    assert not (tmp_path / "out").exists()


def test_skip_existing_trusts_only_a_complete_set_of_this_checkpoint_and_settings(tmp_path, tiny_checkpoint):
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    assert run_predict([folder], out, tiny_checkpoint).exit_code == 0
    kept = run_predict([folder], out, tiny_checkpoint, "--skip-existing")
    assert kept.exit_code == 0 and "0 segmented, 2 skipped" in kept.stderr
    whole = (out / "a.tif").read_bytes()
    (out / "a.tif").write_bytes(whole[:len(whole) // 2])  # half-written (a crash without the temporary)
    redone = run_predict([folder], out, tiny_checkpoint, "--skip-existing")
    assert redone.exit_code == 0 and "1 segmented, 1 skipped" in redone.stderr, redone.output
    with rasterio.open(out / "a.tif") as labels:
        assert labels.read(1).shape == (40, 50)
    other = run_predict([folder], out, tiny_checkpoint, "--skip-existing", "--tile-overlap", "0.5")
    assert other.exit_code == 1 and "other settings" in other.stderr
    summary = json.loads((out / "a.json").read_text())
    assert summary["settings"]["tile_overlap"] == 0.25 and summary["label_bytes"] == (out / "a.tif").stat().st_size


def test_an_unreadable_tiff_goes_with_the_rasters_only_when_there_are_rasters(tmp_path):
    from segcli.raster.inputs import scan_rasters

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    Image.new("RGB", (20, 20)).save(folder / "photo.png")
    alone = scan_rasters([folder], tmp_path / "out", 10**8, every_tiff=False)
    assert alone.rasters == [] and sorted(p.name for p in alone.others) == ["broken.tif", "photo.png"]
    write_raster(folder / "geo.tif", scene(20, 20))
    (folder / "photo.png").unlink()
    with_rasters = scan_rasters([folder], tmp_path / "out", 10**8, every_tiff=False)
    assert [relative.name for _, relative in with_rasters.rasters] == ["geo.tif", "broken.tif"]
    assert with_rasters.others == []


def test_a_linked_sub_folder_of_out_that_leads_outside_it_is_refused(tmp_path):
    folder = _folder(tmp_path)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    result = run_predict([folder], out, "/nonexistent/weights.safetensors")
    assert result.exit_code == 1 and "outside the output folder" in result.stderr, result.output
    assert files_under(elsewhere) == set() and files_under(out) == {"sub"}


def test_the_temporaries_a_killed_run_left_are_removed_and_others_kept(tmp_path, tiny_checkpoint):
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / ".a.tif.0123abcd.tmp", out / "sub" / ".b.tif.89abcdef.tmp"]
    for path in stale:
        path.write_bytes(b"half of a label GeoTIFF")
    kept = out / ".notes.txt.0123abcd.tmp"  # names no output of this run: not segcli's to remove
    kept.write_bytes(b"mine")
    result = run_predict([folder], out, tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in stale) and kept.read_bytes() == b"mine"
    assert "removed 2 temporary files an interrupted run left behind" in result.stderr


def test_a_folder_without_tiffs_is_not_scanned_for_rasters(tmp_path, tiny_checkpoint, monkeypatch):
    import segcli.raster.inputs

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned for rasters")

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(folder / "sub" / "a.png")
    monkeypatch.setattr(segcli.raster.inputs, "scan_rasters", no_scan)
    result = run_predict([folder], tmp_path / "out", tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert "sub/a.png" in files_under(tmp_path / "out")
    write_raster(folder / "sub" / "geo.TIF", scene(20, 20))  # found by name: the scan runs
    assert run_predict([folder], tmp_path / "out2", tiny_checkpoint).exit_code == 1
