"""One palette per checkpoint: the synthetic dataset's ground truth, a shipped synth checkpoint's predictions,
its ONNX export's metadata and the compare-upsampling grids all draw class k in the same colour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from robustness_support import WIDE_TERMINAL
from segcli.cli.main import cli
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.palettes import SYNTH_COLORS

N = len(SYNTH_CLASSES)
CHECKPOINT = "lraspp-mobilenet-synth"


def _segcli(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args), env=WIDE_TERMINAL)
    assert result.exit_code == 0, result.output


def _png_palette(path: Path) -> list[tuple[int, ...]]:
    image = Image.open(path)
    assert image.mode == "P"
    flat = image.getpalette()
    return [tuple(flat[3 * i:3 * i + 3]) for i in range(N)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, n=1, seed=3, size=(64, 64), val_fraction=0.0)
    return out


def test_synth_ground_truth_png_uses_the_synth_palette(dataset):
    mask = next((dataset / "SegmentationClass").glob("*.png"))
    assert _png_palette(mask) == list(SYNTH_COLORS)
    assert json.loads((dataset / "dataset.json").read_text())["palette"] == "synth"


def test_shipped_synth_checkpoint_predictions_and_onnx_metadata_share_the_ground_truth_palette(dataset, tmp_path):
    pytest.importorskip("onnx")
    image = next((dataset / "JPEGImages").glob("*.jpg"))
    _segcli("predict", str(image), "--model", "lraspp", "--weights", CHECKPOINT, "--device", "cpu", "--outputs", "label,json",
            "--out", str(tmp_path / "pred"))
    predicted = _png_palette(next((tmp_path / "pred").glob("*.png")))
    truth = _png_palette(next((dataset / "SegmentationClass").glob("*.png")))
    assert predicted == truth
    import onnx

    graph = tmp_path / "model.onnx"
    _segcli("export", "--weights", CHECKPOINT, "--out", str(graph), "--size", "64")
    metadata = {prop.key: prop.value for prop in onnx.load(str(graph)).metadata_props}
    assert [tuple(colour) for colour in json.loads(metadata["palette"])] == truth


def test_compare_upsampling_grid_draws_the_ground_truth_in_its_palette(dataset, tmp_path):
    from segcli.upsampling.report import CAPTION_HEIGHT, GAP, _tile_size

    image = next((dataset / "JPEGImages").glob("*.jpg"))
    mask = next((dataset / "SegmentationClass").glob("*.png"))
    folder = tmp_path / "set"
    (folder / "masks").mkdir(parents=True)
    (folder / image.name).write_bytes(image.read_bytes())
    (folder / "masks" / mask.name).write_bytes(mask.read_bytes())
    out = tmp_path / "grids"
    _segcli("compare-upsampling", str(folder), "--methods", "nearest", "--out", str(out), "--device", "cpu")
    grid = np.asarray(Image.open(next(out.rglob(f"{image.stem}*.png"))).convert("RGB"))
    labels = np.asarray(Image.open(mask))
    tile_w, tile_h = _tile_size(*labels.shape)
    left, top = GAP + tile_w + GAP, GAP + CAPTION_HEIGHT  # the second tile: the ground truth
    tile = grid[top:top + tile_h, left:left + tile_w]
    expected = {SYNTH_COLORS[k] for k in np.unique(labels) if k < N}  # == the ground truth PNG's palette (above)
    shown = {tuple(int(v) for v in pixel) for pixel in tile.reshape(-1, 3)}
    assert expected <= shown
