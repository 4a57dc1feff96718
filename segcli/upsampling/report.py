"""What compare-upsampling shows: a side-by-side grid per image, a summary chart and a table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segcli.errors import MissingDependencyError
from segcli.outputs import atomic_save_image, atomic_write_bytes, colorize
from segcli.upsampling.compare import ImageOutcome, ranked_methods

TILE_MAX_SIDE = 320   # larger images are shrunk in the grid
TILE_MIN_SIDE = 128   # smaller ones are enlarged (nearest), so labels stay readable
CAPTION_HEIGHT = 30  # two lines: the name, then the image's mIoU
GAP = 4


def grid_path(out_dir: Path, relative: Path) -> Path:
    return out_dir / "grids" / relative.with_suffix(".png")


def _tile_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) of a grid tile: the longer side at most TILE_MAX_SIDE, the shorter at least TILE_MIN_SIDE."""
    longer, shorter = max(height, width), min(height, width)
    scale = 1.0
    if longer > TILE_MAX_SIDE:
        scale = TILE_MAX_SIDE / longer
    elif shorter < TILE_MIN_SIDE:
        scale = min(TILE_MIN_SIDE / shorter, TILE_MAX_SIDE / longer)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _caption(method: str, scores: dict[str, float]) -> str:
    miou = scores.get("miou")
    if miou is None or not math.isfinite(miou):
        return method
    return f"{method}\nmIoU {100 * miou:.1f}%"


def image_grid(outcome: ImageOutcome, categories: tuple[str, ...], palette: Any) -> Image.Image:
    """Input, ground truth (when there is one) and each method's labels in one row, captioned."""
    height, width = outcome.rgb.shape[:2]
    tile_w, tile_h = _tile_size(height, width)
    n_classes = len(categories)
    tiles: list[tuple[str, Image.Image]] = [("input", Image.fromarray(outcome.rgb).resize((tile_w, tile_h), Image.BILINEAR))]
    if outcome.ground_truth is not None:
        tiles.append(("ground truth", _label_tile(outcome.ground_truth, palette, n_classes, tile_w, tile_h)))
    for method, labels in outcome.labels.items():
        tiles.append((_caption(method, outcome.scores.get(method, {})),
                      _label_tile(labels, palette, n_classes, tile_w, tile_h)))
    font = ImageFont.load_default(size=12)
    grid = Image.new("RGB", (len(tiles) * (tile_w + GAP) + GAP, tile_h + CAPTION_HEIGHT + 2 * GAP), "white")
    draw = ImageDraw.Draw(grid)
    for index, (caption, tile) in enumerate(tiles):
        left = GAP + index * (tile_w + GAP)
        text = "\n".join(_fit(draw, line, font, tile_w) for line in caption.split("\n"))
        draw.multiline_text((left + 2, GAP), text, fill="black", font=font, spacing=2)
        grid.paste(tile, (left, GAP + CAPTION_HEIGHT))
    return grid


def _label_tile(labels: np.ndarray, palette: Any, n_classes: int, tile_w: int, tile_h: int) -> Image.Image:
    return Image.fromarray(colorize(labels, palette, n_classes)).resize((tile_w, tile_h), Image.NEAREST)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """Shorten a caption that is wider than its tile."""
    if draw.textlength(text, font=font) <= width - 4:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width - 4:
        text = text[:-1]
    return text + "…"


def write_grid(out_dir: Path, outcome: ImageOutcome, categories: tuple[str, ...], palette: Any) -> Path:
    path = grid_path(out_dir, outcome.sample.relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_image(image_grid(outcome, categories, palette), path)
    return path


def write_chart(path: Path, summary: dict[str, Any]) -> Path:
    """Bars per method: mIoU and boundary F with ground truth, else upsampling / end-to-end time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError("the summary chart needs matplotlib: pip install 'segcli[plot]'") from None
    import io

    methods = list(summary["methods"])
    values = summary["methods"]
    if summary["images_with_ground_truth"]:
        series = [("mIoU", [100 * (values[m]["miou"] or 0.0) for m in methods]),
                  (f"boundary F ({summary['boundary_px']} px)", [100 * values[m]["boundary_f"] for m in methods])]
        unit, title = "%", "accuracy per upsampling method"
    else:
        series = [("upsampling", [values[m]["upsample_ms"] for m in methods]),
                  ("end to end", [values[m]["end_to_end_ms"] for m in methods])]
        unit, title = "ms per image", "time per upsampling method (no ground truth)"
    figure = Figure(figsize=(max(5.0, 1.3 * len(methods) + 2), 3.6), dpi=110)
    axes = figure.subplots()
    positions = np.arange(len(methods))
    width = 0.8 / len(series)
    for offset, (label, numbers) in enumerate(series):
        bars = axes.bar(positions + (offset - (len(series) - 1) / 2) * width, numbers, width, label=label)
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.set_xticks(positions, methods, fontsize=8)
    top = max((max(numbers) for _, numbers in series), default=0.0)
    axes.set_ylim(0, 115 if unit == "%" else max(top * 1.25, 1e-3))  # headroom for the legend and labels
    axes.set_ylabel(unit)
    axes.set_title(f"{title} — {summary['images']} image(s), {summary['mode']}", fontsize=9)
    axes.legend(fontsize=7, loc="upper right", ncols=len(series))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def summary_table(summary: dict[str, Any]):
    """A rich Table: one row per method, accuracy columns only with ground truth."""
    from rich import box
    from rich.table import Table

    with_gt = bool(summary["images_with_ground_truth"])
    table = Table(title=f"upsampling methods: {summary['images']} image(s), {summary['mode']}, {summary['device']}",
                  caption=f"times: {summary['timing']}; memory: {summary['memory_kind']}",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("method", no_wrap=True)
    if with_gt:
        for column in ("mIoU %", "acc %", f"bF@{summary['boundary_px']} %"):
            table.add_column(column, justify="right")
    for column in ("params", "up ms", "e2e ms", "up mem"):
        table.add_column(column, justify="right", no_wrap=True)
    for method in ranked_methods(summary):
        row = summary["methods"][method]
        cells = [method]
        if with_gt:
            cells += [_percent(row["miou"]), _percent(row["pixel_acc"]), _percent(row["boundary_f"])]
        cells += [f"{row['upsample_params']:,}", _milliseconds(row["upsample_ms"]),
                  _milliseconds(row["end_to_end_ms"]), _bytes(row["upsample_peak_bytes"])]
        table.add_row(*cells)
    return table


def agreement_table(summary: dict[str, Any]):
    """Pairwise agreement: % of pixels where two methods give the same label."""
    from rich import box
    from rich.table import Table

    methods = list(summary["methods"])
    table = Table(title="agreement: % of pixels with the same label", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("", no_wrap=True)
    for method in methods:
        table.add_column(method.replace("-", "-\n"), justify="right")
    for method in methods:
        table.add_row(method, *(_percent(summary["agreement"][method][other]) for other in methods))
    return table


def _milliseconds(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _bytes(count: int) -> str:
    """1536 -> '1.5K', 3 * 2**20 -> '3.0M' (binary units)."""
    value = float(count)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}G"
