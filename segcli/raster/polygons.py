"""Label GeoTIFF -> GeoJSON: one Polygon feature per 4-connected region of one class
(rasterio.features.shapes), with the class name, index, pixel count and area in map units
(square metres in a metre CRS, square degrees in EPSG:4326), in the raster's CRS (named in a
`crs` member, as GeoJSON 2008 did; RFC 7946 readers assume WGS 84). Void (255) pixels make no feature.

`--simplify TOLERANCE` runs Douglas-Peucker (tolerance in map units) on every ring, keeping at least
a triangle; rings are simplified one by one, so neighbouring polygons may then overlap or leave
slivers (shapely's topology-preserving simplification is not a dependency). The area stays the
area of the unsimplified region. The label map is read whole (1 byte a pixel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segcli.raster.geotiff import VOID
from segcli.raster.source import import_rasterio

MARK = "segcli_classes"  # a member of every GeoJSON segcli writes (what --overwrite may replace)


def ring_area(ring: list) -> float:
    """Shoelace area of a closed ring (absolute)."""
    points = np.asarray(ring, dtype=np.float64)
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))) / 2.0


def polygon_area(rings: list) -> float:
    return ring_area(rings[0]) - sum(ring_area(hole) for hole in rings[1:])


def simplify_ring(ring: list, tolerance: float) -> list:
    """Douglas-Peucker on a closed ring (first point == last), at least 4 points kept."""
    points = np.asarray(ring, dtype=np.float64)
    if len(points) <= 4 or tolerance <= 0:
        return [list(p) for p in points]
    keep = np.zeros(len(points), dtype=bool)
    far = int(np.argmax(np.hypot(*(points - points[0]).T)))  # split the ring at its farthest point
    keep[[0, far, len(points) - 1]] = True
    stack = [(0, far), (far, len(points) - 1)]
    while stack:
        start, end = stack.pop()
        if end - start < 2:
            continue
        a, b = points[start], points[end]
        segment = b - a
        inner = points[start + 1:end]
        length = np.hypot(*segment)
        if length == 0:
            distance = np.hypot(*(inner - a).T)
        else:
            distance = np.abs(segment[0] * (inner[:, 1] - a[1]) - segment[1] * (inner[:, 0] - a[0])) / length
        index = int(np.argmax(distance))
        if distance[index] > tolerance:
            middle = start + 1 + index
            keep[middle] = True
            stack.extend([(start, middle), (middle, end)])
    kept = points[keep]
    if len(kept) < 4:
        return [list(p) for p in points]
    return [list(p) for p in kept]


def crs_member(crs) -> dict | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def label_polygons(label_path: Path, categories: tuple[str, ...], simplify: float | None = None) -> dict:
    """The FeatureCollection of a label GeoTIFF's regions."""
    rasterio = import_rasterio()
    from rasterio.features import shapes

    with rasterio.open(label_path) as dataset:
        labels = dataset.read(1)
        transform, crs = dataset.transform, dataset.crs
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    features = []
    for geometry, value in shapes(labels, mask=labels != VOID, connectivity=4, transform=transform):
        index = int(value)
        rings = geometry["coordinates"]
        area = polygon_area(rings)
        if simplify:
            rings = [simplify_ring(ring, simplify) for ring in rings]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
                         "properties": {"class": categories[index] if index < len(categories) else str(index),
                                        "index": index, "pixels": int(round(area / pixel_area)), "area": area}})
    collection = {"type": "FeatureCollection", MARK: list(categories), "features": features}
    member = crs_member(crs)
    if member is not None:
        collection["crs"] = member
    return collection
