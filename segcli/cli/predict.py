"""`segcli predict`: segment files, folders or globs with one model load."""

from __future__ import annotations

import signal
from pathlib import Path

import click
from rich.markup import escape

from segcli.text import printable

from segcli.cli.cluster_options import cluster_options
from segcli.cli.crf_options import crf_options
from segcli.cli.options import (
    batch_size_option, device_option, download_option, max_pixels_option, model_option, overwrite_option,
    precision_option, quiet_option, replaced_option, weights_option,
)
from segcli.cli.output_choice import (
    checkpoint_classes, choose_outputs, finish_report, output_options, parse_classes, read_one_image, stream_image,
)
from segcli.cli.predict_options import tile_setting, tiling_options
from segcli.cli.raster_predict import raster_options


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True)
@model_option
@weights_option
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("segcli-out"),
              show_default=True, help="Output folder (sub-folders of the inputs are kept); - writes one image's "
                                      "output to stdout (input - reads the image from stdin).")
@device_option
@precision_option
@crf_options
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Overlay opacity of the mask colours.")
@output_options
@overwrite_option("Replace outputs an earlier run wrote (never an input, never a file segcli did not write).")
@click.option("--skip-existing", is_flag=True,
              help="Keep images whose outputs are complete and segment the rest (resume a run).")
@max_pixels_option
@download_option
@tiling_options
@click.option("--multiscale/--no-multiscale", default=True, show_default=True,
              help="Fuse the input scales the checkpoint's authors tested with (kazuto1011's DeepLab v2: "
                   "0.5/0.75/1, max of the logits); --no-multiscale runs one scale.")
@batch_size_option(default=None, help="Same-size images per forward pass [default: auto: 1 on a CPU, 4 on a GPU].")
@click.option("--io-workers", type=click.IntRange(min=0), default=None,
              help="Threads decoding ahead and writing behind the model (0: none) [default: auto: on a CPU two "
                   "images side by side, each with half the cores; on a GPU 2]. Giving this or --batch-size runs "
                   "one image stream with torch's threads as they are.")
@raster_options
@quiet_option()
@cluster_options
@replaced_option("--workers", "--ray-workers (the Ray actor count, with --engine ray)", takes_value=True)
def predict(inputs, model, weights, out_dir, device, precision, crf, alpha, outputs, classes, report, overwrite,
            skip_existing, max_pixels, download, tiling, tta, multiscale, batch_size, io_workers, raster, quiet,
            cluster) -> None:
    """Segment INPUTS (files, folders searched recursively, or globs) and write, per image,
    a label PNG (palettized, pixel value = class index), an overlay with a legend and a JSON summary
    (--outputs chooses: also class masks, cut-outs, COCO RLE, probabilities).

    \b
    Example:  segcli predict img.jpg --model deeplabv3p --crf
    Pipe:     cat img.jpg | segcli predict - --out - > label.png
    GeoTIFF:  segcli predict scene.tif --outputs polygons  (labels + GeoJSON)
    """
    if overwrite and skip_existing:
        raise click.UsageError("--overwrite and --skip-existing exclude each other")
    if weights and str(weights).lower().endswith(".onnx") and precision not in ("auto", "fp32"):
        raise click.BadParameter(f"{precision}: an ONNX graph runs in fp32 (onnxruntime's CPU provider); "
                                 "leave --precision out or pass fp32", param_hint="'--precision'")
    from segcli.cli.raster_predict import raster_inputs

    rasters = raster_inputs(inputs, max_pixels, outputs, raster, out_dir)
    if rasters is not None:  # GeoTIFFs; with plain images too: a mixed run
        return _predict_mixed(rasters, locals()) if rasters.images else _predict_rasters(rasters, locals())
    choice = choose_outputs(inputs, out_dir, outputs, classes, report, overwrite, skip_existing)
    cluster = _ray_cluster(cluster, choice.stream, batch_size, io_workers)  # None: the local engine
    inference, settings = _inference_options(crf, precision, tiling, tta, multiscale, alpha)

    from rich.console import Console

    console = Console(stderr=True, quiet=quiet, soft_wrap=True)
    options = _output_options(choice, model, weights, download, out_dir=out_dir, alpha=alpha, overwrite=overwrite,
                              skip_existing=skip_existing, settings=settings)
    # every output problem of the run fails here, before the model loads
    run = None if choice.stream else _plan_run(inputs, options, console, choice.report)
    if cluster is not None:
        from segcli.distributed.run import run_on_ray
        from segcli.distributed.settings import EngineSettings

        settings = EngineSettings.resolve(model, weights, download, device=device, options=inference)
        return _finish(run, run_on_ray(run, settings, cluster, console, max_pixels), choice, out_dir, console, quiet)
    piped = read_one_image(inputs[0], max_pixels) if choice.stream else None  # a bad input fails before the model loads
    engine = _load_engine(model, weights, device, download, inference, console) \
        if choice.stream or run.work.todo else None
    if choice.stream:
        stream_image(engine, piped, choice.kinds[0], alpha, options.classes)
        return
    _finish(run, _run_with_progress(run, engine, max_pixels, console, batch_size, io_workers), choice, out_dir,
            console, quiet, engine)


def _inference_options(crf, precision, tiling, tta, multiscale, alpha):
    """The engine's InferenceOptions, and the settings a set's JSON records (what --skip-existing compares)."""
    from segcli.inference_options import InferenceOptions

    inference = InferenceOptions(precision=precision, tiling=tiling, tta=tta,
                                 input_scales=single_scale(multiscale), crf=crf)
    settings = {"precision": precision,
                "crf": None if crf is None else {"given": dict(crf.given), "method": crf.method},
                "tile": tile_setting(tiling), "tile_overlap": tiling.overlap, "tta": tta is not None,
                "multiscale": multiscale, "alpha": alpha}
    return inference, settings


def _ray_cluster(cluster, stream, batch_size, io_workers):
    """The --engine ray cluster with --batch-size as images per actor call, once the flags agree and Ray imports."""
    if cluster is None:
        return None
    if io_workers is not None:
        raise click.UsageError("--io-workers is for the local engine; with --engine ray each worker decodes, "
                               "segments and writes its own images (use --ray-workers)")
    from dataclasses import replace

    from segcli.distributed.settings import import_ray

    import_ray()  # MissingDependencyError with the install hint, before anything is planned or loaded
    if stream:
        raise click.UsageError("--engine ray writes into an --out folder, not to stdout")
    return replace(cluster, batch_size=batch_size)


def _raster_part(flags):
    """(RasterOptions, TilingPolicy, InferenceOptions, cluster, Ray runner) of the flags; what rasters cannot do
    is a usage error."""
    from segcli.cli.raster_predict import check_raster_flags, raster_settings
    from segcli.inference_options import InferenceOptions
    from segcli.raster.run import RasterOptions

    refused = {"--crf": flags["crf"] is not None, "--tta": flags["tta"] is not None, "--report": flags["report"],
               "--classes": flags["classes"] is not None}
    kinds, policy = check_raster_flags(flags["outputs"], flags["out_dir"], flags["tiling"], refused)
    cluster = _ray_cluster(flags["cluster"], False, flags["batch_size"], flags["io_workers"])  # None: local
    inference = InferenceOptions(precision=flags["precision"], tiling=policy,
                                 input_scales=single_scale(flags["multiscale"]))
    settings, on_ray = raster_settings(flags, kinds, cluster, inference, policy)
    raster = flags["raster"]
    options = RasterOptions(out_dir=flags["out_dir"], kinds=kinds, overwrite=flags["overwrite"],
                            skip_existing=flags["skip_existing"], bands=raster.bands, scale=raster.scale,
                            cog=raster.cog, simplify=raster.simplify, **settings)
    return options, policy, inference, cluster, on_ray


def _predict_rasters(scan, flags) -> None:
    """GeoTIFF inputs: segcli.raster (label GeoTIFF, JSON, polygons); what it cannot do is a usage error."""
    from segcli.cli.raster_predict import predict_rasters

    options, policy, inference, _, on_ray = _raster_part(flags)
    predict_rasters(scan, options, policy, lambda console: _load_engine(
        flags["model"], flags["weights"], flags["device"], flags["download"], inference, console), flags["quiet"],
        on_ray=on_ray)


def _predict_mixed(scan, flags) -> None:
    """Plain images and rasters: both parts planned and checked against each other before the one model load."""
    from rich.console import Console

    from segcli.cli.mixed_run import check_crossing, finish_mixed
    from segcli.cli.raster_predict import execute_raster_part, plan_raster_part
    from segcli.pipeline.run import FolderRun

    raster_options, policy, inference, cluster, on_ray = _raster_part(flags)
    listed = [kind.strip() for kind in (flags["outputs"] or "").split(",") if kind.strip().lower() != "polygons"]
    choice = choose_outputs(flags["inputs"], flags["out_dir"], ",".join(listed) or None, None, False,
                            flags["overwrite"], flags["skip_existing"])
    _, settings = _inference_options(None, flags["precision"], flags["tiling"], None, flags["multiscale"],
                                     flags["alpha"])
    console = Console(stderr=True, quiet=flags["quiet"], soft_wrap=True)
    options = _output_options(choice, flags["model"], flags["weights"], flags["download"], out_dir=flags["out_dir"],
                              alpha=flags["alpha"], overwrite=flags["overwrite"],
                              skip_existing=flags["skip_existing"], settings=settings)
    image_run = FolderRun(options, scan.images)
    raster_run = plan_raster_part(scan, raster_options, console)
    check_crossing(image_run, choice.kinds, scan.rasters, raster_options)  # OutputError, before the model loads
    loaded = []

    def engine(console):  # one load, shared by both parts (none when neither has work)
        if not loaded:
            loaded.append(_load_engine(flags["model"], flags["weights"], flags["device"], flags["download"],
                                       inference, console))
        return loaded[0]

    if cluster is not None:
        from segcli.distributed.run import run_on_ray
        from segcli.distributed.settings import EngineSettings

        resolved = EngineSettings.resolve(flags["model"], flags["weights"], flags["download"],
                                          device=flags["device"], options=inference)
        images = run_on_ray(image_run, resolved, cluster, console, flags["max_pixels"])
    else:
        images = _run_with_progress(image_run, engine(console) if image_run.work.todo else None,
                                    flags["max_pixels"], console, flags["batch_size"], flags["io_workers"])
    if not images.interrupted:
        execute_raster_part(raster_run, raster_options, policy, engine, console, on_ray)
    finish_mixed(images, raster_run, flags["out_dir"], flags["quiet"])


def single_scale(multiscale: bool) -> tuple[float, ...] | None:
    """InferenceOptions.input_scales for --multiscale/--no-multiscale: the checkpoint's protocol, or one scale."""
    return None if multiscale else (1.0,)


def _load_engine(model, weights, device, download, inference, console):
    """Load the engine once and say what runs: checkpoint, device, precision, multi-scale and the CRF."""
    from segcli.engine import SegmentationEngine

    engine = SegmentationEngine.load(model, weights=weights, device=device, allow_download=download, options=inference)
    scales = "/".join(f"{scale:g}" for scale in sorted(engine.input_scales))
    console.print(f"[bold]{engine.record.model}[/] {escape(printable(engine.source))} on {engine.plan.device} "
                  f"({engine.execution_text()}){' + dense CRF' if inference.crf else ''}"
                  f"{f' + multi-scale {scales}' if '/' in scales else ''}", highlight=False)
    engine.on_memory_retry = lambda message: console.print(f"[yellow]{message}[/]", highlight=False)
    if inference.crf is not None:  # the CRF that runs: iterations after any cap, resolution, labels (per image: JSON)
        from segcli.crf import describe_plan

        console.print(describe_plan(*engine.crf_for())["text"], highlight=False)
    return engine


def _finish(run, summary, choice, out_dir, console, quiet, engine=None) -> None:
    """The report page (--report), then the run's final line and exit code."""
    report_failed = choice.report and not finish_report(run, summary, out_dir, console)
    if getattr(engine, "policy", None) is not None and engine.policy.choices:  # --precision auto on CUDA: what ran
        console.print(f"execution policy: {engine.policy.describe()}", highlight=False)
    if getattr(summary, "crf_images", 0):  # what the CRF ran, counted from the images (the plan line said what may)
        bands = summary.crf_band_images
        console.print(f"dense CRF ran on {summary.crf_images} image{'s' * (summary.crf_images != 1)} ("
                      + (f"full-size band updates on {bands}" if bands else "no full-size band updates") + ")",
                      highlight=False)
    _report(summary, out_dir, quiet)
    if report_failed:
        raise SystemExit(1)


def _output_options(choice, model, weights, download, **fields):
    """OutputOptions of the choice: --classes checked against the checkpoint's classes (usage error, exit 2)."""
    from segcli.outputs.classwise import require_pycocotools
    from segcli.outputs.plan import OutputOptions

    if "rle" in choice.kinds:
        require_pycocotools()
    categories, kept, identity = (), None, None
    if choice.needs_categories:
        checkpoint, categories = checkpoint_classes(model, weights, download)
        if choice.class_items is not None:
            kept = parse_classes(choice.class_items, categories, checkpoint)
    if fields.get("skip_existing"):  # a set is kept only when made by this checkpoint (JSON: name and source)
        from segcli.checkpoints.resolve import resolve_checkpoint

        resolved = resolve_checkpoint(model, weights, allow_download=download)
        identity = (resolved.record.name, resolved.describe())
    fields["settings"] = dict(fields["settings"], classes=list(kept) if kept is not None else None)
    return OutputOptions(outputs=choice.kinds, classes=kept, categories=categories, checkpoint=identity, **fields)


def _plan_run(inputs, options, console, report: bool = False):
    """Find the inputs (the output folder excluded) and check every output: OutputError before any work."""
    from segcli.inputs import scan_inputs
    from segcli.pipeline.run import FolderRun
    from segcli.report.page import check_report_target

    scan = scan_inputs(inputs, exclude=[options.out_dir])
    for line in scan.skipped:
        console.print(f"skipped: {escape(printable(line))}", highlight=False)
    if report:
        check_report_target(options.out_dir)
    return FolderRun(options, scan.sources, scan.problems)


def _run_with_progress(run, engine, max_pixels, console, batch_size, io_workers):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from segcli.pipeline.scheduler import Schedule

    total = len(run.work.todo) + len(run.work.skipped) + len(run.work.failed) + len(run.problems)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, transient=True,
                        disable=console.quiet or total < 2 or not console.is_terminal)  # a pipe: no bar to clear
    schedule = Schedule.auto(engine.plan.device.type if engine is not None else "cpu").with_choices(
        batch_size, io_workers)
    with progress:
        task = progress.add_task("segmenting", total=total)

        def on_progress(source, status):
            if status.startswith("failed"):
                progress.console.print(f"[red]failed[/]: {escape(printable(status[len('failed: '):]))}",
                                       markup=True, highlight=False, soft_wrap=True)
            progress.advance(task)

        def on_stop(number):
            progress.console.print("stopping after the images in hand (press Ctrl-C again to stop at once)",
                                   highlight=False)

        summary = run.execute(engine, max_pixels=max_pixels, schedule=schedule, on_progress=on_progress,
                              on_stop=on_stop)
    if summary.removed_temporaries:
        console.print(f"removed {len(summary.removed_temporaries)} temporary files an interrupted run left behind",
                      highlight=False)
    return summary


def _report(summary, out_dir: Path, quiet: bool) -> None:
    from segcli.pipeline.interrupts import exit_code

    parts = [f"{summary.processed} segmented"]
    if summary.skipped:
        parts.append(f"{len(summary.skipped)} skipped (outputs exist)")
    if summary.failed:
        parts.append(f"{len(summary.failed)} failed")
    line = f"{', '.join(parts)} in {summary.seconds:.1f} s -> {printable(out_dir)}"
    if summary.interrupted:
        stopped = "Terminated" if summary.signal == signal.SIGTERM else "Interrupted"
        click.echo(f"{stopped}: {line}", err=True)
        raise SystemExit(exit_code(summary.signal))
    if summary.failed:
        if quiet:  # otherwise each failure was already shown as it happened
            for _, message in summary.failed:
                click.echo(f"failed: {printable(message)}", err=True)
        click.echo(line, err=True)
        raise SystemExit(1)
    click.echo(line, err=True)
