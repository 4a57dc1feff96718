"""Showing and saving a benchmark: rich table, JSON, CSV, matplotlib plot."""

from __future__ import annotations

import csv
import io
import math
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


def benchmark_table(report: BenchmarkReport) -> Table:
    """The rich table: one row per measurement, machine in the title."""
    settings = report.settings
    table = Table(
        title=f"segcli benchmark: {describe_environment(report.environment)}",
        caption=(f"batch {settings['batch']}, {settings['warmup']} warm-up + {settings['iters']} timed runs "
                 f"(end-to-end: {settings['e2e_iters']}); ms per batch; GFLOP per image = FlopCounterMode "
                 f"FLOPs / 1e9 (2 per multiply-add); x base = bare fp32 model's mean / this mean"),
    )
    for header, justify in (
        ("model", "left"), ("weights", "left"), ("size", "left"), ("precision", "left"),
        ("params M", "right"), ("GFLOP", "right"), ("mean", "right"), ("p50", "right"), ("p95", "right"),
        ("min", "right"), ("img/s", "right"), ("GFLOP/s", "right"), ("peak MB", "right"),
        ("e2e ms", "right"), ("CRF ms", "right"), ("x base", "right"),
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
            _number(row.e2e_mean_ms), _number(row.crf_ms), _number(row.ratio_vs_baseline, 2) + ("x" if row.ratio_vs_baseline else ""),
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


def plot_report(report: BenchmarkReport, path: str | Path) -> None:
    """Latency (p50) against input size per model and precision; mIoU against images/s with --data."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib: pip install 'segcli[plot]'") from None
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    engine_rows = [row for row in report.rows if row.variant == "engine"]
    if any(row.miou is not None for row in engine_rows):
        _plot_accuracy_vs_speed(axes, engine_rows)
    else:
        _plot_latency_vs_size(axes, report.rows)
    axes.set_title(describe_environment(report.environment), fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def _plot_latency_vs_size(axes: Any, rows: list[BenchmarkRow]) -> None:
    series: dict[str, list[BenchmarkRow]] = {}
    for row in rows:
        label = f"{row.model} {row.precision}" + (" bare" if row.variant == "baseline" else "")
        series.setdefault(label, []).append(row)
    for label, points in series.items():
        points.sort(key=lambda row: row.height * row.width)
        style = "--" if label.endswith(" bare") else "-"
        axes.plot([row.height * row.width / 1e6 for row in points], [row.p50_ms for row in points],
                  style, marker="o", label=label)
    sizes = sorted({(row.height, row.width) for row in rows}, key=lambda hw: hw[0] * hw[1])
    axes.set_xticks([h * w / 1e6 for h, w in sizes], [f"{h}x{w}" for h, w in sizes])
    axes.set_xlabel("input size (ticks at megapixel positions)")
    axes.set_ylabel(f"p50 latency, ms per batch of {rows[0].batch if rows else 1}")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)


def _plot_accuracy_vs_speed(axes: Any, rows: list[BenchmarkRow]) -> None:
    for row in rows:
        if row.miou is None:
            continue
        axes.scatter(row.images_per_s, 100 * row.miou)
        axes.annotate(f"{row.model} {row.precision} {row.size}", (row.images_per_s, 100 * row.miou),
                      fontsize=7, xytext=(4, 4), textcoords="offset points")
    axes.set_xscale("log")
    axes.set_xlabel("images/s (model only)")
    axes.set_ylabel("mIoU %")
    axes.grid(True, which="both", alpha=0.3)


def markdown_text(report: BenchmarkReport) -> str:
    """A Markdown page: the command, the machine, the conventions, and the table."""
    environment, settings = report.environment, report.settings
    lines = ["# segcli benchmark", ""]
    if settings.get("command"):
        lines += ["Made with:", "", "```", settings["command"], "```", ""]
    lines += [f"- {key}: {value}" for key, value in environment.items() if value is not None]
    lines += [
        f"- runs: {settings['warmup']} warm-up + {settings['iters']} timed (model only), "
        f"{settings['e2e_iters']} timed end-to-end; batch {settings['batch']}", "",
    ]
    lines += [f"- {key}: {value}" for key, value in report.to_dict()["conventions"].items()]
    headers = ["model", "weights", "size", "precision", "params M", "GFLOP", "mean ms", "p50 ms", "p95 ms",
               "min ms", "img/s", "GFLOP/s", "peak MB", "e2e ms", "CRF ms", "x base", "mIoU %", "pix acc %"]
    lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in report.rows:
        precision = f"{row.precision} bare" if row.variant == "baseline" else (
            f"{row.precision}{' CL' if row.channels_last else ''}{' +CRF' if row.crf else ''}")
        cells = [
            row.model, row.weights, row.size, precision, _number(row.parameters / 1e6, 2),
            _number(row.gflops, 2 if row.gflops >= 1 else 3), _number(row.mean_ms), _number(row.p50_ms),
            _number(row.p95_ms), _number(row.min_ms), _number(row.images_per_s), _number(row.achieved_gflops_per_s, 0),
            _number(row.peak_memory_mb, 0), _number(row.e2e_mean_ms), _number(row.crf_ms),
            _number(row.ratio_vs_baseline, 2), _percent(row.miou), _percent(row.pixel_accuracy),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(report: BenchmarkReport, path: str | Path) -> None:
    from segcli.outputs import atomic_write_bytes

    atomic_write_bytes(path, markdown_text(report).encode("utf-8"))
