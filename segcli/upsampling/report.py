"""What compare-upsampling shows: a side-by-side grid per image, a summary chart and a table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segcli.errors import MissingDependencyError
from segcli.atomic import atomic_write_bytes
from segcli.outputs.images import atomic_save_image, colorize
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
    errors: dict[str, np.ndarray] = {}
    if summary["images_with_ground_truth"]:
        series = [("mIoU", [100 * (values[m]["miou"] or 0.0) for m in methods]),
                  (f"boundary F ({summary['boundary_px']} px)", [100 * values[m]["boundary_f"] for m in methods])]
        errors = {label: _error_bars(values, methods, key) for (label, _), key in zip(series, ("miou", "boundary_f"))}
        unit, title = "%", "accuracy per upsampling method, 95% bootstrap intervals"
    else:
        series = [("upsampling", [values[m]["upsample_ms"] for m in methods]),
                  ("end to end", [values[m]["end_to_end_ms"] for m in methods])]
        unit, title = "ms per image", "time per upsampling method (no ground truth)"
    figure = Figure(figsize=(max(5.0, 1.3 * len(methods) + 2), 3.6), dpi=110)
    axes = figure.subplots()
    positions = np.arange(len(methods))
    width = 0.8 / len(series)
    for offset, (label, numbers) in enumerate(series):
        bars = axes.bar(positions + (offset - (len(series) - 1) / 2) * width, numbers, width, label=label,
                        yerr=errors.get(label), capsize=3, error_kw={"elinewidth": 0.8})
        axes.bar_label(bars, fmt="%.1f", fontsize=7, padding=2, label_type="center")
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


def _error_bars(values: dict[str, Any], methods: list[str], key: str) -> np.ndarray:
    """[2, methods] distances (in %) from each point estimate down and up to its interval's ends."""
    low = [100 * (values[m][key] - values[m][f"{key}_ci95"][0]) for m in methods]
    high = [100 * (values[m][f"{key}_ci95"][1] - values[m][key]) for m in methods]
    return np.clip(np.array([low, high]), 0, None)


def summary_table(summary: dict[str, Any]):
    """A rich Table: one row per method; with ground truth, the scores and their 95% intervals."""
    from rich import box
    from rich.table import Table

    if not summary["images_with_ground_truth"]:
        return cost_table(summary)
    resampled = " and ".join(summary["bootstrap"]["resampled"])
    table = Table(title=f"upsampling methods: {summary['images']} image(s), {summary['mode']}, {summary['device']}",
                  caption=f"% with the 95% CI (bootstrap over {resampled}); mean over seeds",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("method")
    table.add_column("seeds", justify="right")
    for column in ("mIoU [95% CI]", "pixel acc [95% CI]", f"bF@{summary['boundary_px']}px [95% CI]"):
        table.add_column(column, justify="right", no_wrap=True)
    for method in ranked_methods(summary):
        row = summary["methods"][method]
        table.add_row(_wrappable(method), str(row["seeds"]),
                      *(_with_interval(row, key) for key in ("miou", "pixel_acc", "boundary_f")))
    return table


def cost_table(summary: dict[str, Any]):
    """A rich Table: learned upsampling parameters, time and memory per method."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"cost: {summary['images']} image(s), {summary['mode']}, {summary['device']}",
                  caption=f"times: {summary['timing']}; memory: {summary['memory_kind']}",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("method", no_wrap=True)
    for column in ("up params", "up ms", "e2e ms", "up mem"):
        table.add_column(column, justify="right", no_wrap=True)
    for method in ranked_methods(summary):
        row = summary["methods"][method]
        table.add_row(method, f"{row['upsample_params']:,}", _milliseconds(row["upsample_ms"]),
                      _milliseconds(row["end_to_end_ms"]), _bytes(row["upsample_peak_bytes"]))
    return table


def pairwise_table(summary: dict[str, Any]):
    """Each pair of methods: the paired difference in mIoU and boundary F, its 95% interval and the verdict."""
    from rich import box
    from rich.table import Table

    table = Table(title="pairwise differences a - b (points), same images and seeds",
                  caption="real: the 95% CI of the difference excludes 0", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("a")
    table.add_column("b")
    for column in ("ΔmIoU [95% CI]", f"ΔbF@{summary['boundary_px']}px [95% CI]", "real"):
        table.add_column(column, justify="right" if column != "real" else "left", no_wrap=True)
    for pair in summary.get("pairwise", []):
        cells = [_wrappable(pair["a"]), _wrappable(pair["b"])]
        for key in ("miou", "boundary_f"):
            low, high = pair[key]["ci95"]
            cells.append(f"{100 * pair[key]['difference']:+.1f} [{100 * low:+.1f},{100 * high:+.1f}]")
        real = [label for key, label in (("miou", "mIoU"), ("boundary_f", "bF")) if pair[key]["significant"]]
        cells.append(", ".join(real) or "no")
        table.add_row(*cells)
    return table


def _wrappable(method: str) -> str:
    return method.replace("-", "-\n")


def agreement_table(summary: dict[str, Any]):
    """Pairwise agreement: % of pixels where two methods give the same label."""
    from rich import box
    from rich.table import Table

    methods = list(summary["methods"])
    table = Table(title="agreement: % of pixels with the same label", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("", no_wrap=True)
    for method in methods:
        table.add_column(_wrappable(method), justify="right")
    for method in methods:
        table.add_row(method, *(_percent(summary["agreement"][method][other]) for other in methods))
    return table


def _milliseconds(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _with_interval(row: dict[str, Any], key: str) -> str:
    low, high = row[f"{key}_ci95"]
    return f"{_percent(row[key])} [{100 * low:.1f},{100 * high:.1f}]"


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
