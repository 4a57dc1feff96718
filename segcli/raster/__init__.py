"""Rasters of any size (GeoTIFF in, GeoTIFF out): read window by window, segmented in row bands, written tiled.

`source` opens a raster with rasterio (the optional `segcli[geo]` extra) and hands out 8-bit RGB rows
(`--bands`, the 2-98 percentile stretch or `--scale`, nodata and masks); `segment` runs the engine's
sliding-window blending (segcli.tiling) over them one band of logits at a time; `geotiff` writes the
uint8 label GeoTIFF (same CRS, transform and size; the colour map; class names in the tags) through a
temporary; `polygons` turns the labels into GeoJSON; `run` is what `segcli predict scene.tif` runs.
"""
