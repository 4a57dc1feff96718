"""Small GeoTIFFs for tests/raster, built with rasterio (projected and geographic, nodata, 16-bit, 4-band)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

UTM_33N = "EPSG:32633"
WGS84 = "EPSG:4326"


def scene(height: int, width: int, bands: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    """Blocks of colour with noise, so the tiny random model gives more than one class."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 3 + yy) % 256, (yy * 5) % 256, ((xx // 16 + yy // 16) % 2) * 200][:bands]
                    + [rng.integers(0, 256, (height, width))] * max(0, bands - 3))
    data = (base + rng.integers(0, 40, base.shape)).clip(0, 255)
    if np.dtype(dtype) == np.uint16:
        data = data * 40 + 1000
    return data.astype(dtype)


def write_raster(path: Path, data: np.ndarray, crs: str | None = UTM_33N, transform=None, nodata=None,
                 tiled: bool = False) -> Path:
    transform = transform if transform is not None else (from_origin(500000.0, 5300000.0, 10.0, 10.0)
                                                         if crs else None)
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2], "count": data.shape[0],
               "dtype": data.dtype.name}
    if crs:
        profile.update(crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def context_engine(seed: int = 0):
    """A CPU engine over two random convolutions (9x9 reach, zero padding): labels vary with colour and
    texture, and a pixel's logits depend on its tile's edges, so blending mistakes show up."""
    import torch
    from torch import nn

    from robustness_support import tiny_record
    from engine_support import engine_of

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 3, 9, padding=4))
    return engine_of(model, tiny_record())


def interrupt_after_the_first_set(child, out: Path, twice: bool, wait_s: float, poll_s: float) -> str:
    """Ctrl-C (twice, 1 s apart, when `twice`) once the run's first JSON is on disk; the run's stderr."""
    import signal
    import time

    deadline = time.monotonic() + wait_s
    while not list(out.glob("*.json")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(poll_s)
    assert child.poll() is None, f"finished before the signal: {child.communicate()}"
    child.send_signal(signal.SIGINT)
    if twice:
        time.sleep(1.0)  # apart: two signals before the handler runs are one
        child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=wait_s)
    return stderr


def assert_only_whole_sets_after_interrupt(child, stderr: str, out: Path, count: int) -> None:
    """Exit 130, an `Interrupted: N segmented ...` last line, and on disk only whole sets (label GeoTIFF + JSON),
    N of them, fewer than `count`."""
    from robustness_support import files_under

    assert child.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Interrupted: ") and "Traceback" not in stderr, stderr
    stems = {name[:-len(".json")] for name in files_under(out) if name.endswith(".json")}
    assert int(last.split()[1]) == len(stems) < count, last
    assert files_under(out) == {f"{stem}.{suffix}" for stem in stems for suffix in ("tif", "json")}
