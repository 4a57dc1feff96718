"""Showing and saving a benchmark: rich table, JSON, CSV, matplotlib plot."""

from __future__ import annotations

import csv
import io
import math
import textwrap
from pathlib import Path
from typing import Any

from rich.table import Table

from segcli.benchmarking.environment import describe_environment
from segcli.benchmarking.runner import BenchmarkReport, BenchmarkRow
from segcli.errors import MissingDependencyError, OutputError

CSV_COLUMNS = tuple(BenchmarkRow.__dataclass_fields__) + ("size",)


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


# one convention for speed ratios everywhere (README, tables, JSON, plot): time relative to the bare model
TIME_RATIO_HEADER = "time vs base"
TIME_RATIO_NOTE = "time vs base = this mean / the bare fp32 model's mean (0.41x: 0.41 times the time; < 1 is faster)"


def _time_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def benchmark_table(report: BenchmarkReport) -> Table:
    """The rich table: one row per measurement, machine in the title."""
    settings = report.settings
    table = Table(
        title=f"segcli benchmark: {describe_environment(report.environment)}",
        caption=(f"batch {settings['batch']}, {settings['warmup']} warm-up + {settings['iters']} timed runs "
                 f"(end-to-end: {settings['e2e_iters']}); ms per batch; GFLOP per image = FlopCounterMode "
                 f"FLOPs / 1e9 (2 per multiply-add); {TIME_RATIO_NOTE}"),
    )
    for header, justify in (
        ("model", "left"), ("weights", "left"), ("size", "left"), ("precision", "left"),
        ("params M", "right"), ("GFLOP", "right"), ("mean", "right"), ("p50", "right"), ("p95", "right"),
        ("min", "right"), ("img/s", "right"), ("GFLOP/s", "right"), ("peak MB", "right"),
        ("e2e ms", "right"), ("CRF ms", "right"), (TIME_RATIO_HEADER, "right"),
    ):
        table.add_column(header, justify=justify)
    with_accuracy = any(row.miou is not None for row in report.rows)
    if with_accuracy:
        table.add_column("mIoU %", justify="right")
        table.add_column("pix acc %", justify="right")
    for row in report.rows:
        precision = f"{row.precision} bare" if row.variant == "baseline" else (
            f"{row.precision}{' CL' if row.channels_last else ''}{' +CRF' if row.crf else ''}")
        cells = [
            row.model, row.weights, row.size, precision, _number(row.parameters / 1e6, 2), _number(row.gflops, 2 if row.gflops >= 1 else 3),
            _number(row.mean_ms), _number(row.p50_ms), _number(row.p95_ms), _number(row.min_ms),
            _number(row.images_per_s), _number(row.achieved_gflops_per_s, 0), _number(row.peak_memory_mb, 0),
            _number(row.e2e_mean_ms), _number(row.crf_ms), _time_ratio(row.time_vs_baseline),
        ]
        if with_accuracy:
            cells += [_percent(row.miou), _percent(row.pixel_accuracy)]
        table.add_row(*cells, style="dim" if row.variant == "baseline" else None)
    return table


def write_json(report: BenchmarkReport, path: str | Path) -> None:
    from segcli.outputs import atomic_write_json

    atomic_write_json(path, report.to_dict())  # OSError becomes OutputError there


def csv_text(report: BenchmarkReport) -> str:
    """The rows as CSV, one column per row field (the same keys as the JSON rows)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({key: ("" if value is None else value) for key, value in row.to_dict().items()})
    return buffer.getvalue()


def write_csv(report: BenchmarkReport, path: str | Path) -> None:
    from segcli.outputs import atomic_write_bytes

    atomic_write_bytes(path, csv_text(report).encode("utf-8"))


FONT_SIZE = 9  # every text in the plot: title, axis labels, ticks, legend
LEGEND_ROWS = 18  # more entries than this go into further legend columns (a taller legend meets the title)
VARIANT_STYLES = {"bare": ("--", "s"), "fp32": ("-", "o"), "bf16": ("-.", "^"), "fp16": (":", "v")}


def plot_report(report: BenchmarkReport, path: str | Path) -> None:
    """Save `benchmark_figure(report)` as a PNG."""
    figure = benchmark_figure(report)
    try:  # the `segcli` text chunk: a later --plot knows the file as segcli's (segcli.outputs.report_file)
        figure.savefig(path, format="png", metadata={"segcli": "benchmark plot"})
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def require_matplotlib() -> None:
    """MissingDependencyError (one line) when matplotlib is missing; selects the Agg backend."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib: pip install 'segcli[plot]'") from None


def benchmark_figure(report: BenchmarkReport) -> Any:
    """Latency against input size and time relative to the bare model (or, with --data, mIoU against
    images/s); one font size, legends beside the axes, size ticks evenly spaced."""
    require_matplotlib()
    import matplotlib.pyplot as plt
    sizes = dict.fromkeys(("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
                           "legend.fontsize", "legend.title_fontsize", "figure.titlesize"), FONT_SIZE)
    with plt.rc_context(sizes):
        figure = plt.figure(figsize=(11, 5), dpi=120, layout="constrained")
        engine_rows = [row for row in report.rows if row.variant == "engine"]
        if any(row.miou is not None for row in engine_rows):
            _plot_accuracy_vs_speed(figure.add_subplot(), engine_rows)
        else:
            latency, ratio = figure.subplots(1, 2)
            _plot_latency_vs_size(latency, ratio, report.rows)
        entries = len(figure.axes[0].get_legend_handles_labels()[0])
        figure.legend(loc="outside right center", frameon=False, ncols=math.ceil(entries / LEGEND_ROWS))
        figure.suptitle(textwrap.fill(describe_environment(report.environment), 110))
    return figure


def _series_style(row: BenchmarkRow, models: list[str]) -> dict[str, Any]:
    """One colour per model, one line style and marker per variant (bare model, fp32, bf16, ...)."""
    import matplotlib

    variant = "bare" if row.variant == "baseline" else row.precision
    linestyle, marker = VARIANT_STYLES.get(variant, ("-", "D"))
    colour = matplotlib.colormaps["tab10"](models.index(row.model) % 10)
    return {"color": colour, "linestyle": linestyle, "marker": marker, "label": f"{row.model} {variant}"}


def _plain_log_axis(axis: Any, set_scale: Any) -> None:
    """A log axis labelled 1, 2, 5, 10, 20, ... in plain numbers (no 10^n, no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _plot_latency_vs_size(latency: Any, ratio: Any, rows: list[BenchmarkRow]) -> None:
    models = list(dict.fromkeys(row.model for row in rows))
    sizes = sorted({(row.height, row.width) for row in rows}, key=lambda hw: hw[0] * hw[1])
    series: dict[str, list[BenchmarkRow]] = {}
    for row in rows:
        series.setdefault(_series_style(row, models)["label"], []).append(row)
    for points in series.values():
        points.sort(key=lambda row: row.height * row.width)
        positions = [sizes.index((row.height, row.width)) for row in points]
        latency.plot(positions, [row.p50_ms for row in points], **_series_style(points[0], models))
        if points[0].variant == "engine" and all(row.time_vs_baseline is not None for row in points):
            ratio.plot(positions, [row.time_vs_baseline for row in points],
                       **dict(_series_style(points[0], models), label=None))
    for axes in (latency, ratio):
        axes.set_xticks(range(len(sizes)), [f"{h}x{w}" for h, w in sizes])
        axes.set_xlabel("input size (height x width)")
        axes.grid(True, which="major", alpha=0.3)
    _plain_log_axis(latency.yaxis, latency.set_yscale)
    latency.set_ylabel(f"p50 latency, ms per batch of {rows[0].batch if rows else 1} (log scale)")
    ratio.axhline(1.0, color="grey", linewidth=1)
    ratio.set_ylim(bottom=0)
    ratio.set_ylabel("time relative to the bare fp32 model (< 1: faster)")


def _plot_accuracy_vs_speed(axes: Any, rows: list[BenchmarkRow]) -> None:
    """mIoU against images/s: one line per model and precision through its input sizes (marker area
    grows with the input size, explained in the legend); names in the legend, never on the data."""
    models = list(dict.fromkeys(row.model for row in rows))
    measured = [row for row in rows if row.miou is not None]
    pixels = sorted({row.height * row.width for row in measured})
    area = {count: 16 + 84 * index / max(1, len(pixels) - 1) for index, count in enumerate(pixels)}
    series: dict[str, list[BenchmarkRow]] = {}
    for row in measured:
        series.setdefault(_series_style(row, models)["label"], []).append(row)
    for label, points in series.items():
        points.sort(key=lambda row: row.height * row.width)
        style = _series_style(points[0], models)
        axes.plot([row.images_per_s for row in points], [100 * row.miou for row in points], color=style["color"],
                  linestyle=style["linestyle"], marker=style["marker"], markersize=4, linewidth=0.8, label=label)
        axes.scatter([row.images_per_s for row in points], [100 * row.miou for row in points],
                     s=[area[row.height * row.width] for row in points], marker=style["marker"], color=style["color"])
    for row in sorted({(row.height * row.width, row.size) for row in measured}):
        axes.scatter([], [], s=area[row[0]], marker="o", color="grey", label=f"input {row[1]}")
    _plain_log_axis(axes.xaxis, axes.set_xscale)
    axes.set_xlabel("images/s, model only (log scale)")
    axes.set_ylabel("mIoU %")
    axes.grid(True, which="both", alpha=0.3)


MARKDOWN_TITLE = "# segcli benchmark\n"  # the first line of every Markdown report (how a later run knows it)


def markdown_text(report: BenchmarkReport) -> str:
    """A Markdown page: the command, the machine, the conventions, and the table."""
    environment, settings = report.environment, report.settings
    lines = [MARKDOWN_TITLE.rstrip("\n"), ""]
    if settings.get("command"):
        lines += ["Made with:", "", "```", settings["command"], "```", ""]
    lines += [f"- {key}: {value}" for key, value in environment.items() if value is not None]
    lines += [
        f"- runs: {settings['warmup']} warm-up + {settings['iters']} timed (model only), "
        f"{settings['e2e_iters']} timed end-to-end; batch {settings['batch']}", "",
    ]
    lines += [f"- {key}: {value}" for key, value in report.to_dict()["conventions"].items()]
    headers = ["model", "weights", "size", "precision", "params M", "GFLOP", "mean ms", "p50 ms", "p95 ms",
               "min ms", "img/s", "GFLOP/s", "peak MB", "e2e ms", "CRF ms", TIME_RATIO_HEADER, "mIoU %", "pix acc %"]
    lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in report.rows:
        precision = f"{row.precision} bare" if row.variant == "baseline" else (
            f"{row.precision}{' CL' if row.channels_last else ''}{' +CRF' if row.crf else ''}")
        cells = [
            row.model, row.weights, row.size, precision, _number(row.parameters / 1e6, 2),
            _number(row.gflops, 2 if row.gflops >= 1 else 3), _number(row.mean_ms), _number(row.p50_ms),
            _number(row.p95_ms), _number(row.min_ms), _number(row.images_per_s), _number(row.achieved_gflops_per_s, 0),
            _number(row.peak_memory_mb, 0), _number(row.e2e_mean_ms), _number(row.crf_ms),
            _time_ratio(row.time_vs_baseline), _percent(row.miou), _percent(row.pixel_accuracy),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(report: BenchmarkReport, path: str | Path) -> None:
    from segcli.outputs import atomic_write_bytes

    atomic_write_bytes(path, markdown_text(report).encode("utf-8"))
