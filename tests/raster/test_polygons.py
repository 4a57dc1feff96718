"""--outputs polygons: GeoJSON regions that rasterize back to the label map."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from rasterio.transform import from_origin

from raster_support import WGS84, context_engine, scene, write_raster
from robustness_support import run_predict
from segcli.raster.geotiff import VOID, LabelWriter
from segcli.raster.polygons import label_polygons, simplify_ring
from segcli.raster.segment import segment_raster
from segcli.raster.source import RasterSource
from segcli.tiling import TilingPolicy

CATEGORIES = ("background", "disc", "square")


def _labels(path, target):
    source = RasterSource.open(path)
    writer = LabelWriter(target, source.dataset, CATEGORIES, "voc", "tiny")
    segment_raster(context_engine(), source, writer.write, TilingPolicy(mode="size", tile_size=64))
    writer.commit()
    source.close()
    with rasterio.open(target) as dataset:
        return dataset.read(1), dataset.transform


def _check_structure(collection):
    """GeoJSON (RFC 7946) shape: a FeatureCollection of Polygon features with closed linear rings."""
    assert collection["type"] == "FeatureCollection" and isinstance(collection["features"], list)
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        for ring in feature["geometry"]["coordinates"]:
            assert len(ring) >= 4 and list(ring[0]) == list(ring[-1])
            assert all(len(position) == 2 and all(np.isfinite(position)) for position in ring)
        assert {"class", "index", "area", "pixels"} <= feature["properties"].keys()


@pytest.mark.parametrize("crs", ["EPSG:32633", WGS84])
def test_polygons_rasterize_back_to_the_labels(tmp_path, crs):
    data = scene(90, 110)
    data[:, 5:20, 30:60] = 0
    transform = from_origin(14.0, 50.0, 0.001, 0.001) if crs == WGS84 else None
    path = write_raster(tmp_path / "scene.tif", data, crs=crs, transform=transform, nodata=0)
    labels, transform = _labels(path, tmp_path / "labels.tif")
    collection = json.loads(json.dumps(label_polygons(tmp_path / "labels.tif", CATEGORIES)))
    _check_structure(collection)
    assert len({f["properties"]["index"] for f in collection["features"]}) > 1
    burned = rasterize([(f["geometry"], f["properties"]["index"]) for f in collection["features"]],
                       out_shape=labels.shape, transform=transform, fill=VOID, dtype="uint8")
    assert (burned == labels).all()
    pixel_area = abs(transform.a * transform.e)
    for index in range(3):
        features = [f["properties"] for f in collection["features"] if f["properties"]["index"] == index]
        assert sum(p["pixels"] for p in features) == int((labels == index).sum())
        assert sum(p["area"] for p in features) == pytest.approx((labels == index).sum() * pixel_area)
    assert collection["crs"]["properties"]["name"].endswith(crs.split(":")[1])


def test_simplified_rings_stay_closed_and_shorter():
    ring = [[float(x), 0.0] for x in range(10)] + [[9.0, 5.0], [0.0, 5.0], [0.0, 0.0]]
    simplified = simplify_ring(ring, 0.5)
    assert simplified == [[0.0, 0.0], [9.0, 0.0], [9.0, 5.0], [0.0, 5.0], [0.0, 0.0]]


def test_cli_writes_geojson_in_the_raster_crs(tmp_path, tiny_checkpoint):
    path = write_raster(tmp_path / "scene.tif", scene(40, 50))
    result = run_predict([path], tmp_path / "out", tiny_checkpoint, "--outputs", "polygons", "--simplify", "10")
    assert result.exit_code == 0, result.output
    collection = json.loads((tmp_path / "out" / "scene.geojson").read_text())
    _check_structure(collection)
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    assert sum(f["properties"]["pixels"] for f in collection["features"]) == 40 * 50
