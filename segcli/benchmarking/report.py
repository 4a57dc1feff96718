"""Showing and saving a benchmark: rich table, JSON, CSV, matplotlib plot."""

from __future__ import annotations

import csv
import io
import math
import textwrap
from pathlib import Path
from typing import Any, Callable

from segcli.benchmarking.environment import describe_environment
from segcli.benchmarking.runner import BenchmarkReport, BenchmarkRow
from segcli.errors import MissingDependencyError, OutputError

CSV_COLUMNS = tuple(BenchmarkRow.__dataclass_fields__) + ("size", "achieved_tflops_per_s")


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


def _precision_cell(row: BenchmarkRow) -> str:
    if row.variant == "baseline":
        return f"{row.precision} bare"
    return f"{row.precision}{' CL' if row.channels_last else ''}{' +CRF' if row.crf else ''}"


def _spread_cell(row: BenchmarkRow) -> str:
    return "-" if row.spread is None or math.isnan(row.spread) else f"{100 * row.spread:.0f}"


# (header, numeric, cell); columns of things that did not run are left out (see table_rows)
_COLUMNS: tuple[tuple[str, bool, Callable[[BenchmarkRow], str]], ...] = (
    ("model", False, lambda row: row.model),
    ("weights", False, lambda row: row.weights),
    ("size", False, lambda row: row.size),
    ("batch", True, lambda row: str(row.batch)),
    ("precision", False, _precision_cell),
    ("params M", True, lambda row: _number(row.parameters / 1e6, 2)),
    ("GFLOP", True, lambda row: _number(row.gflops, 2 if row.gflops >= 1 else 3)),
    ("mean ms", True, lambda row: _number(row.mean_ms)),
    ("p50 ms", True, lambda row: _number(row.p50_ms)),
    ("spread %", True, _spread_cell),
    ("img/s", True, lambda row: _number(row.images_per_s)),
    ("GFLOP/s", True, lambda row: _number(row.achieved_gflops_per_s, 0)),
    ("TFLOP/s", True, lambda row: _number(row.achieved_tflops_per_s, 1)),
    ("% peak", True, lambda row: _percent(row.peak_share)),
    ("peak MB", True, lambda row: _number(row.peak_memory_mb, 0)),
    ("e2e ms", True, lambda row: _number(row.e2e_mean_ms)),
    ("CRF ms", True, lambda row: _number(row.crf_ms)),
    (TIME_RATIO_HEADER, True, lambda row: _time_ratio(row.time_vs_baseline)),
    ("mIoU %", True, lambda row: _percent(row.miou)),
    ("pix acc %", True, lambda row: _percent(row.pixel_accuracy)),
)
_SHOWN_WHEN = {  # a column shown only when some row has a value for it
    "batch": lambda row: row.batch != 1, "TFLOP/s": lambda row: row.device.startswith("cuda"),
    "% peak": lambda row: row.peak_share is not None,
    "e2e ms": lambda row: row.e2e_mean_ms is not None, "CRF ms": lambda row: row.crf_ms is not None,
    TIME_RATIO_HEADER: lambda row: row.time_vs_baseline is not None, "mIoU %": lambda row: row.miou is not None,
    "pix acc %": lambda row: row.pixel_accuracy is not None,
}


def table_rows(report: BenchmarkReport) -> tuple[list[tuple[str, bool]], list[list[str]]]:
    """(header, numeric) per column and the cells per row: one row per measurement; the columns of
    things that did not run (end-to-end, CRF, baseline, accuracy) are left out."""
    columns = [column for column in _COLUMNS
               if column[0] not in _SHOWN_WHEN or any(map(_SHOWN_WHEN[column[0]], report.rows))]
    return ([(header, numeric) for header, numeric, _ in columns],
            [[cell(row) for _, _, cell in columns] for row in report.rows])


def table_title(report: BenchmarkReport) -> str:
    return f"segcli benchmark: {describe_environment(report.environment)}"


def table_notes(report: BenchmarkReport) -> list[str]:
    """The footnotes: how the figures were measured, saying only what ran."""
    settings, rows = report.settings, report.rows
    batches = "/".join(map(str, settings.get("batches") or [settings["batch"]]))
    runs = f"batch {batches}; {settings['warmup']} warm-up + {settings['iters']} timed model-only runs"
    if any(row.e2e_mean_ms is not None for row in rows):
        runs += f", {settings['e2e_iters']} timed end-to-end"
    notes = [runs + "; ms per batch; mean ms and ratios are means, spread % = (p90 - p10) / p50 of the timed runs",
             "GFLOP per image = FlopCounterMode FLOPs / 1e9 (2 per multiply-add)"]
    if any(row.time_vs_baseline is not None for row in rows):
        notes.append(TIME_RATIO_NOTE)
    notes.extend(_peak_notes(report))
    lanes = sorted({row.e2e_lanes for row in rows if row.e2e_mean_ms is not None and row.e2e_lanes})
    if lanes:
        notes.append(f"e2e ms: what `predict` does per batch (decode the JPEG files ... write every output), with "
                     f"{'/'.join(map(str, lanes))} lane(s) of images side by side, so it can be below the model-only "
                     "mean")
    if any(row.crf_ms is not None for row in rows):
        notes.append("CRF ms: the CRF stage per image, within e2e ms")
    load = report.load_average
    if load.get("start") or load.get("end"):
        values = " -> ".join(f"{values[0]:.1f}" for values in (load.get("start"), load.get("end")) if values)
        notes.append(f"load average (1 min) {values} on {load.get('cores')} cores")
    return notes


def _peak_notes(report: BenchmarkReport) -> list[str]:
    """Where the share of the GPU's peak comes from, or why it is missing."""
    from segcli.benchmarking.gpu_peaks import PEAK_SOURCE

    gpu = report.environment.get("gpu")
    if not gpu:
        return []
    if any(row.peak_share is not None for row in report.rows):
        return [f"% peak = achieved TFLOP/s / the {gpu}'s dense peak at the row's precision ({PEAK_SOURCE})"]
    return [f"% peak omitted: no peak figures for {gpu} in segcli/benchmarking/gpu_peaks.py"]


def write_json(report: BenchmarkReport, path: str | Path) -> None:
    from segcli.atomic import atomic_write_json

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
    from segcli.atomic import atomic_write_bytes

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
    """MissingDependencyError naming the `plot` extra when matplotlib cannot be imported."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        raise MissingDependencyError("plotting needs matplotlib, in segcli's `plot` extra: "
                                     "pip install 'segcli[plot]'") from None


def benchmark_figure(report: BenchmarkReport) -> Any:
    """Mean latency against input size and time relative to the bare model (or, with --data, mIoU against
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
        latency.plot(positions, [row.mean_ms for row in points], **_series_style(points[0], models))
        if points[0].variant == "engine" and all(row.time_vs_baseline is not None for row in points):
            ratio.plot(positions, [row.time_vs_baseline for row in points],
                       **dict(_series_style(points[0], models), label=None))
    for axes in (latency, ratio):
        axes.set_xticks(range(len(sizes)), [f"{h}x{w}" for h, w in sizes])
        axes.set_xlabel("input size (height x width)")
        axes.grid(True, which="major", alpha=0.3)
    _plain_log_axis(latency.yaxis, latency.set_yscale)
    latency.set_ylabel(f"mean latency, ms per batch of {rows[0].batch if rows else 1} (log scale)")
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
    lines += [f"- {note}" for note in table_notes(report)]
    lines += [f"- {warning}" for warning in report.warnings]
    lines += [""] + [f"- {key}: {value}" for key, value in report.to_dict()["conventions"].items()]
    columns, rows = table_rows(report)
    lines += ["", "| " + " | ".join(header for header, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def write_markdown(report: BenchmarkReport, path: str | Path) -> None:
    from segcli.atomic import atomic_write_bytes

    atomic_write_bytes(path, markdown_text(report).encode("utf-8"))
