"""`segcli benchmark`: speed, memory, FLOPs and accuracy of zoo models on this machine, in one table."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from segcli.cli.report_files import announce, check_reports, data_files

from segcli.cli.crf_options import crf_options
from segcli.cli.options import (
    batch_size_option, device_option, overwrite_option, precisions_option, quiet_option, size_callback,
    size_limits_text,
)

MIN_SIDE = 32


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _models_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    from segcli.errors import UnknownNameError
    from segcli.models import canonical_name

    names = _comma_list(value)
    if not names:
        raise click.BadParameter("give one or more model names separated by commas")
    try:
        return [canonical_name(name) for name in names]
    except UnknownNameError as exc:
        raise click.BadParameter(str(exc)) from None


def _batches(value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        batches = tuple(int(item) for item in _comma_list(value))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected whole numbers, e.g. 1,8,32", param_hint="'--batches'") from None
    if not batches or min(batches) < 1:
        raise click.BadParameter(f"{value!r}: batch sizes must be >= 1", param_hint="'--batches'")
    return tuple(dict.fromkeys(batches))


def _invocation() -> str | None:
    """The command line as typed, when run as the `segcli` program (not under a test runner)."""
    program = Path(sys.argv[0]).name
    if program == "segcli" or (program == "__main__.py" and "segcli" in sys.argv[0]):
        return shlex.join(["segcli", *sys.argv[1:]])
    return None


@click.command("benchmark")
@click.option("--models", callback=_models_callback, default=None, metavar="NAME[,NAME...]",
              help="Zoo models to measure [default: every model with a checkpoint on disk]. "
                   "Named models without a checkpoint run with random weights (marked 'random').")
@click.option("--sizes", callback=size_callback(min_side=MIN_SIDE, several=True), default="512", show_default=True, metavar="N|HxW[,...]",
              help=f"Network input sizes: N for NxN, or HxW ({size_limits_text(MIN_SIDE)}).")
@batch_size_option(default=1, help="Images per forward pass.")
@click.option("--batches", callback=lambda ctx, param, value: _batches(value), default=None, metavar="N[,N...]",
              help="Several batch sizes, rows for each (FLOPs counted once per model and size); replaces --batch-size.")
@device_option
@precisions_option
@crf_options
@click.option("--warmup", type=click.IntRange(min=0), default=None,
              help="Untimed runs before timing [default: 2 on CPU, 5 on GPU].")
@click.option("--iters", type=click.IntRange(min=1), default=None,
              help="Timed model-only runs [default: 5 on CPU, 200 on GPU].")
@click.option("--e2e-iters", type=click.IntRange(min=1), default=None,
              help="Timed end-to-end runs [default: --iters, at most 20].")
@click.option("--e2e/--no-e2e", "end_to_end", default=True, show_default=True,
              help="Also time what `predict` does per image: decode a JPEG file -> ... -> CRF -> write the label, "
                   "overlay and JSON.")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also time the bare model (fp32, contiguous, no engine) for the 'time vs base' ratio.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="VOC-format folder: adds mIoU and pixel accuracy (evaluated at the images' own size).")
@click.option("--split", default="val", show_default=True, help="Split of --data to evaluate.")
@click.option("--onnxruntime", is_flag=True,
              help="Also export each model to ONNX (verified) and time it in onnxruntime's CPU provider, "
                   "as `predict --weights FILE.onnx` runs it (needs segcli[export]).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the full report (machine, settings, rows) as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the rows as CSV.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the command, machine, conventions and table as Markdown.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG: latency vs size, or mIoU vs speed with --data (needs matplotlib).")
@overwrite_option("Replace existing --json/--csv/--markdown/--plot files segcli did not write "
                  "(never a checkpoint or a file of --data).")
@quiet_option("No progress lines, only the table.")
def benchmark(models, sizes, batch_size, batches, device, precisions, warmup, iters, e2e_iters, end_to_end, baseline,
              data_dir, split, onnxruntime, json_path, csv_path, markdown_path, plot_path, overwrite, quiet,
              crf) -> None:
    """Measure how fast each model runs here, at which size and precision, with how much memory,
    and (with --data) how accurately.

    Per model and size: a 'bare' row (the nn.Module alone, fp32, contiguous) and one engine row
    per precision. Latency is model-only, in ms per batch; 'e2e ms' is what `predict` does per
    batch: JPEG files decoded, the model, CRF, and every default output written (label PNG,
    overlay, JSON), with per-stage times in the JSON. Defaults: 2 warm-up + 5 timed runs on
    a CPU, 5 + 200 on a GPU (as MMSegmentation's benchmark).

    \b
    Examples:
      segcli benchmark
      segcli benchmark --models lraspp,deeplabv3p --sizes 256,512 --precision bf16
      segcli benchmark --models deeplabv3p --crf --json b.json --plot b.png
    """
    if batches and click.get_current_context().get_parameter_source("batch_size") is not ParameterSource.DEFAULT:
        raise click.UsageError("give --batches N[,N...] or --batch-size N, not both (--batches replaces --batch-size)")
    if onnxruntime:
        from segcli.export.onnx_format import require_onnx

        require_onnx()
    if plot_path:
        from segcli.benchmarking.report import require_matplotlib

        require_matplotlib()  # before anything is measured

    from rich.console import Console

    from segcli.benchmarking.runner import BenchmarkSettings, run_benchmark
    from segcli.benchmarking.subjects import iter_subjects, plan_subjects

    progress = Console(stderr=True, quiet=quiet)
    planned = plan_subjects(models)
    _check_report_files(planned, data_dir, split, (json_path, csv_path, markdown_path, plot_path), overwrite)
    progress.print("benchmarking " + ", ".join(f"{plan.name} ({plan.weights})" for plan in planned))
    settings = BenchmarkSettings(
        sizes=sizes, batch=batch_size, batches=batches, device=device, precisions=precisions, crf=crf, warmup=warmup, iters=iters,
        e2e_iters=e2e_iters, end_to_end=end_to_end, baseline=baseline, data_dir=data_dir, split=split,
        onnxruntime=onnxruntime,
    )

    def on_row(row) -> None:
        what = "bare fp32" if row.variant == "baseline" else row.precision
        progress.print(f"  {row.model} {row.size} x{row.batch} {what}: mean {row.mean_ms:.1f} ms")

    report = run_benchmark(iter_subjects(planned), settings, on_row=on_row, command=_invocation())
    _show(report, progress)
    _write_files(report, json_path, csv_path, markdown_path, plot_path, progress)
    if report.interrupted:
        Console(stderr=True).print(f"Interrupted: {len(report.rows)} row(s) measured", soft_wrap=True)
        sys.exit(130)


def _show(report, progress) -> None:
    """The table on stdout (plain rows when piped), its footnotes and any warning on stderr."""
    from rich.console import Console

    from segcli.benchmarking.report import table_notes, table_rows, table_title
    from segcli.cli.tables import Column, print_table

    columns, rows = table_rows(report)
    print_table(table_title(report), [Column(header, numeric=numeric, keep_whole=header in ("model", "weights"))
                                      for header, numeric in columns], rows)
    for note in table_notes(report):
        progress.print(note, markup=False, highlight=False)
    for warning in report.warnings:
        Console(stderr=True).print(warning, soft_wrap=True, markup=False, highlight=False)


def _write_files(report, json_path, csv_path, markdown_path, plot_path, progress) -> None:
    from segcli.benchmarking.report import plot_report, write_csv, write_json, write_markdown

    writers = ((json_path, write_json), (csv_path, write_csv), (markdown_path, write_markdown),
               (plot_path, plot_report))
    for path, write in writers:
        if path and (report.rows or write is not plot_report):
            write(report, path)
            announce(path)


def _check_report_files(planned, data_dir, split, paths, overwrite: bool) -> None:
    """The report files, checked before any model loads: never a checkpoint, a file of --data or a user's file."""
    from segcli.benchmarking.report import CSV_COLUMNS, MARKDOWN_TITLE
    from segcli.outputs.report_file import json_with_keys, png_with_segcli_chunk, text_starting_with

    json_path, csv_path, markdown_path, plot_path = paths
    inputs = [plan.resolved.path for plan in planned if plan.resolved is not None] + data_files(data_dir, split)
    check_reports([("--json", json_path, json_with_keys("environment", "settings", "rows", "conventions")),
                   ("--csv", csv_path, text_starting_with(",".join(CSV_COLUMNS) + "\n")),
                   ("--markdown", markdown_path, text_starting_with(MARKDOWN_TITLE)),
                   ("--plot", plot_path, png_with_segcli_chunk)], inputs, overwrite)
