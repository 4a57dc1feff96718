"""`segcli compare-upsampling`: nearest, bilinear, transposed convolution and max-unpooling side by side."""

from __future__ import annotations

from pathlib import Path

import click

from segcli.cli.options import (
    device_option, download_option, max_pixels_option, overwrite_option, precision_option, quiet_option, weights_option,
    zoo_model_option,
)
from segcli.cli.report_files import announce, check_reports, checkpoint_files


@click.command("compare-upsampling")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@zoo_model_option(help="Compare the training-free methods on this zoo model's low-resolution logits. "
                   "Default: the shipped decoders (per method three seeds, trained identically on synth data "
                   "on one frozen DeepLab v3+ MobileNetV2 encoder).")
@weights_option
@click.option("--decoders", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of decoder checkpoints [default: the decoders shipped with segcli].")
@click.option("--methods", default=None, metavar="A,B,...",
              help="Methods to compare: nearest, bilinear, transposed-fixed, transposed-learned, unpool "
                   "[default: all that apply; with --model the first three].")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("upsampling-out"), show_default=True, help="Folder for the grids and the chart.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the full summary (per method, per image, agreement) as JSON.")
@click.option("--boundary-px", type=click.IntRange(0, 64), default=2, show_default=True,
              help="Boundary F-score tolerance: a boundary pixel is matched when the other map has one within this many pixels.")
@click.option("--split", default=None, help="VOC layout: only the ids of ImageSets/Segmentation/SPLIT.txt.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Compare at most this many images.")
@max_pixels_option
@device_option
@precision_option
@download_option
@overwrite_option("Replace an existing --json file segcli did not write (never an input).")
@quiet_option("Only the table and errors.")
def compare_upsampling(folder, model, weights, decoders, methods, out_dir, json_path, boundary_px, split, limit,
                       max_pixels, device, precision, download, overwrite, quiet) -> None:
    """Compare upsampling methods on the images in FOLDER and write a side-by-side grid per image,
    a summary chart and a table (mIoU, pixel accuracy and boundary F-score when masks are present;
    agreement, parameters, time and memory always).

    Masks are read from a VOC layout (JPEGImages/ + SegmentationClass/: FOLDER itself or any folder
    in it) or from a masks/ folder beside the images with the same file stems; label masks are never
    compared as photos.

    \b
    Examples:
      segcli compare-upsampling photos/ --json upsampling.json
      segcli compare-upsampling photos/ --model lraspp --methods nearest,bilinear
    """
    if model is None and weights is not None:
        raise click.UsageError("--weights needs --model (the shipped decoders are chosen with --decoders)")
    if model is not None and decoders is not None:
        raise click.UsageError("--decoders applies only without --model")
    if model is None and (precision != "auto" or download):
        raise click.UsageError("--precision and --download apply only with --model (the decoders run in fp32)")

    from rich.console import Console

    from segcli.errors import UnknownNameError
    from segcli.upsampling.methods import METHOD_NAMES, TRAINING_FREE_METHODS, parse_methods
    from segcli.upsampling.samples import find_samples

    try:
        chosen = parse_methods(methods, TRAINING_FREE_METHODS if model else METHOD_NAMES)
    except UnknownNameError as exc:  # a bad flag value: a usage error (exit 2)
        raise click.BadParameter(str(exc), param_hint="--methods") from None
    console = Console(stderr=True, quiet=quiet)
    samples = find_samples(folder, split=split, limit=limit)
    _check_json(json_path, samples, model, weights, overwrite)
    runner = _zoo_runner(model, weights, device, precision, download, chosen) if model else \
        _decoder_runner(decoders, device, chosen)
    with_masks = sum(sample.mask_path is not None for sample in samples)
    console.print(f"[bold]{len(samples)}[/] image(s), {with_masks} with masks; {runner.mode}: {', '.join(chosen)}")
    summary = _run(runner, samples, out_dir, boundary_px, max_pixels, console)

    from segcli.upsampling.report import agreement_table, cost_table, pairwise_table, summary_table, write_chart

    chart = write_chart(out_dir / "chart.png", summary)
    summary["outputs"] = {"grids": [entry["grid"] for entry in summary["per_image"]], "chart": str(chart)}
    if json_path is not None:
        _write_json(json_path, summary)
    stdout = Console()
    stdout.print(summary_table(summary))
    if summary.get("pairwise"):
        stdout.print(pairwise_table(summary))
        stdout.print(cost_table(summary))
    stdout.print(agreement_table(summary))
    console.print(f"grids and chart -> {out_dir}" + (f"; summary -> {json_path}" if json_path else ""))
    if summary["failed"]:
        for failure in summary["failed"]:
            click.echo(f"failed: {failure['image']}: {failure['error']}", err=True)
        raise SystemExit(1)


def _check_json(json_path: Path | None, samples, model, weights, overwrite: bool) -> None:
    """--json before any model loads: never an image, a mask or the checkpoint; a user's file only with --overwrite."""
    from segcli.outputs.report_file import json_with_keys

    inputs = [path for sample in samples for path in (sample.path, sample.mask_path) if path is not None]
    check_reports([("--json", json_path, json_with_keys("methods", "per_image"))],
                  inputs + checkpoint_files(model, weights) if model else inputs, overwrite)


def _write_json(json_path: Path, summary: dict) -> None:
    from segcli.atomic import atomic_write_json

    if json_path.parent != Path(""):
        json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, summary)
    announce(json_path)


def _decoder_runner(decoders: Path | None, device: str, methods: tuple[str, ...]):
    from segcli.device import resolve_device
    from segcli.upsampling.decoders import find_decoders, load_decoder, shipped_decoders_dir
    from segcli.upsampling.encoder import load_shared_encoder
    from segcli.upsampling.runners import DecoderRunner

    paths = find_decoders(decoders or shipped_decoders_dir(), methods)
    loaded = {method: [load_decoder(path) for path in files] for method, files in paths.items()}
    nets = {method: [net for net, _ in pairs] for method, pairs in loaded.items()}
    records = {method: [record for _, record in pairs] for method, pairs in loaded.items()}
    resolved = resolve_device(device)
    encoder = load_shared_encoder(nets[methods[0]][0].widths, resolved)
    return DecoderRunner(encoder, nets, records, resolved)


def _zoo_runner(model: str, weights: str | None, device: str, precision: str, download: bool,
                methods: tuple[str, ...]):
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions
    from segcli.upsampling.runners import ZooLogitsRunner

    engine = SegmentationEngine.load(model, weights=weights, device=device, options=InferenceOptions(precision=precision),
                                     allow_download=download)
    return ZooLogitsRunner(engine, methods)


def _run(runner, samples, out_dir: Path, boundary_px: int, max_pixels: int | None, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from segcli.upsampling.compare import compare_upsampling as run_comparison
    from segcli.upsampling.report import write_grid

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                        transient=True, disable=console.quiet or len(samples) < 2)
    with progress:
        task = progress.add_task("comparing", total=len(samples))

        def on_image(outcome):
            path = write_grid(out_dir, outcome, runner.categories, runner.palette)
            progress.advance(task)
            return {"grid": str(path)}

        def on_failure(sample, message):
            progress.console.print(f"[red]{sample.path}[/]: {message}")
            progress.advance(task)

        return run_comparison(runner, samples, boundary_px=boundary_px, max_pixels=max_pixels,
                              on_image=on_image, on_failure=on_failure)
