"""The raster path's labels, georeferencing and file format against the in-memory tiled prediction."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio

from raster_support import WGS84
from engine_support import engine_of
from raster_support import context_engine
from segcli.raster.geotiff import VOID, LabelWriter
from segcli.raster.segment import segment_raster
from segcli.raster.source import RasterSource
from segcli.tiling import TilingPolicy

POLICY = TilingPolicy(mode="size", tile_size=64, overlap=0.25)


@pytest.fixture
def engine():
    return context_engine()


def _segment(engine, path, target, policy=POLICY, **open_kwargs):
    source = RasterSource.open(path, **open_kwargs)
    writer = LabelWriter(target, source.dataset, ("background", "disc", "square"), "voc", "tiny")
    try:
        stats = segment_raster(engine, source, writer.write, policy)
        writer.commit()
    finally:
        writer.discard()
        source.close()
    return stats


@pytest.mark.parametrize("crs", ["EPSG:32633", WGS84])
def test_labels_equal_the_in_memory_tiled_prediction(engine, make_raster, tmp_path, crs, monkeypatch):
    """150x217 (not a multiple of the 64 px window): every label equals engine.predict's with the same tiling
    (argmaxed 7 rows at a time)."""
    monkeypatch.setattr("segcli.raster.segment.ARGMAX_ROWS", 7)
    transform = rasterio.transform.from_origin(14.0, 50.0, 0.0001, 0.0001) if crs == WGS84 else None
    path, data = make_raster(crs=crs, transform=transform)
    stats = _segment(engine, path, tmp_path / "labels.tif")
    tiled = engine_of(engine.model, engine.record, tiling=POLICY)
    expected = tiled.predict(np.ascontiguousarray(data.transpose(1, 2, 0)), crf=None).labels
    with rasterio.open(tmp_path / "labels.tif") as out, rasterio.open(path) as src:
        labels = out.read(1)
        assert (out.crs, out.transform, out.width, out.height) == (src.crs, src.transform, src.width, src.height)
        assert out.dtypes == ("uint8",) and out.nodata == VOID
        assert json.loads(out.tags()["segcli_classes"]) == ["background", "disc", "square"]
        assert out.colormap(1)[VOID] == (0, 0, 0, 0)
    assert len(np.unique(expected)) > 1  # the comparison means something
    assert (labels == expected).mean() == 1.0
    assert stats["class_pixels"] == np.bincount(expected.ravel(), minlength=3).tolist()


def test_big_raster_is_tiled_and_deflated(engine, make_raster, tmp_path):
    path, _ = make_raster(height=520, width=530, tiled=True)
    _segment(engine, path, tmp_path / "labels.tif", TilingPolicy(mode="size", tile_size=256))
    with rasterio.open(tmp_path / "labels.tif") as out:
        assert out.profile["tiled"] and out.block_shapes == [(512, 512)]
        assert out.compression.value.lower() == "deflate"


def test_nodata_pixels_are_void_never_a_class(engine, make_raster, tmp_path):
    from raster_support import scene, write_raster

    data = scene(100, 90)
    data[:, 10:30, 20:50] = 0  # nodata = 0 in every band
    path = write_raster(tmp_path / "nodata.tif", data, nodata=0)
    stats = _segment(engine, path, tmp_path / "labels.tif")
    with rasterio.open(tmp_path / "labels.tif") as out:
        labels = out.read(1)
    nodata = (data == 0).all(axis=0)
    assert nodata.sum() >= 20 * 30
    assert (labels[nodata] == VOID).all() and (labels[~nodata] < 3).all()
    assert stats["void_pixels"] == int(nodata.sum())


def test_a_failed_write_leaves_no_file_under_the_name(engine, make_raster, tmp_path):
    path, _ = make_raster()
    target = tmp_path / "labels.tif"
    source = RasterSource.open(path)
    writer = LabelWriter(target, source.dataset, ("background", "disc", "square"), "voc", "tiny")

    def write_then_fail(top, labels):
        writer.write(top, labels)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        try:
            segment_raster(engine, source, write_then_fail, POLICY)
        finally:
            writer.discard()
            source.close()
    assert os.listdir(tmp_path) == ["scene.tif"]


def test_alpha_band_zero_is_void(engine, tmp_path):
    from rasterio.enums import ColorInterp

    from raster_support import scene

    data = scene(70, 80, bands=4)
    data[3] = 255
    data[3, 40:60, 10:30] = 0
    path = tmp_path / "rgba.tif"
    with rasterio.open(path, "w", driver="GTiff", height=70, width=80, count=4, dtype="uint8", photometric="RGB",
                       alpha="YES", crs="EPSG:32633", transform=rasterio.transform.from_origin(0, 0, 1, 1)) as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    _segment(engine, path, tmp_path / "labels.tif")
    with rasterio.open(tmp_path / "labels.tif") as out:
        labels = out.read(1)
    assert (labels[40:60, 10:30] == VOID).all() and (labels != VOID).sum() == 70 * 80 - 20 * 20


def test_rows_are_read_one_tile_strip_at_a_time(engine, make_raster, tmp_path):
    """Memory bound: no read takes more rows than a tile, every row is read (overlaps twice at most)."""
    path, _ = make_raster(height=300, width=90)
    source = RasterSource.open(path)
    reads = []
    original = source.planes

    def counting(top, count):
        reads.append((top, count))
        return original(top, count)

    source.planes = counting
    labels = np.zeros((300, 90), np.uint8)
    segment_raster(engine, source, lambda top, band: labels.__setitem__(slice(top, top + len(band)), band), POLICY)
    source.close()
    assert reads and all(count == 64 for _, count in reads)
    covered = np.zeros(300, int)
    for top, count in reads:
        covered[top:top + count] += 1
    assert covered.min() >= 1 and covered.max() <= 2


def test_reused_bands_equal_fresh_bands():
    import torch

    from segcli.tiling import tiled_logit_bands, tiled_logit_bands_of_rows

    torch.manual_seed(0)
    image = torch.randn(1, 3, 150, 97)
    conv = torch.nn.Conv2d(3, 4, 7, padding=3)
    with torch.no_grad():
        fresh = [(top, band.clone()) for top, band in tiled_logit_bands(conv, image, 4, 48, 0.3, 2)]
        reused = [(top, band.clone()) for top, band in tiled_logit_bands_of_rows(
            lambda y, xs, h, w: torch.cat([image[..., y:y + h, x:x + w] for x in xs]), 150, 97, conv, 4, 48, 0.3, 2,
            reuse=True)]
    assert [top for top, _ in fresh] == [top for top, _ in reused]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(fresh, reused))
