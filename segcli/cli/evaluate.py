"""`segcli evaluate`: mIoU, pixel accuracy and per-class IoU on a labelled VOC-format folder."""

from __future__ import annotations

from pathlib import Path

import click

from segcli.cli.options import crf_options, crf_params_from_options, device_option, model_option, \
    precision_option, weights_option


@click.command("evaluate")
@model_option
@weights_option
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="VOC-format folder with JPEGImages/, SegmentationClass/, ImageSets/Segmentation/.")
@click.option("--split", default="val", show_default=True, help="Split file under ImageSets/Segmentation/.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Also write the metrics here.")
@click.option("--tta", is_flag=True, help="Test-time augmentation, as in predict: scales 0.75/1/1.25 + flip.")
@crf_options
@device_option
@precision_option
def evaluate(model: str, weights: str | None, data_dir: str, split: str, json_path: str | None, tta: bool,
             device: str, precision: str, **crf_kwargs) -> None:
    """Measure mIoU and pixel accuracy on a labelled folder, with predict's exact preprocessing."""
    from rich.console import Console
    from rich.progress import Progress

    from segcli.engine import SegmentationEngine
    from segcli.evaluation import evaluate_folder

    crf = crf_params_from_options(crf_kwargs)
    console = Console()
    engine = SegmentationEngine.load(model, weights=weights, device=device, precision=precision)
    if tta:
        from segcli.tiling import TTAParams

        engine.tta = TTAParams()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("evaluating", total=None)
        metrics = evaluate_folder(engine, data_dir, split, crf=crf,
                                  on_image=lambda done, total: progress.update(task, completed=done, total=total))
    metrics["weights"] = engine.source
    metrics["device"] = engine.plan.device.type
    metrics["precision"] = engine.plan.precision
    metrics["tta"] = tta
    console.print(metrics_table(metrics))
    if metrics["excluded_classes"]:
        console.print(f"excluded from mIoU (absent from both prediction and ground truth): "
                      f"{', '.join(metrics['excluded_classes'])}")
    else:
        console.print("excluded from mIoU: none (every class appears in the prediction or the ground truth)")
    if json_path:
        from segcli.outputs import atomic_write_json

        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, metrics)
        console.print(f"wrote {path}")


def metrics_table(metrics: dict):
    """A rich table: per-class IoU, then the summary figures."""
    from rich.table import Table

    title = (f"{metrics['checkpoint']} on {metrics['data']} [{metrics['split']}], {metrics['images']} images"
             + (", CRF" if metrics["crf"] else "") + (", TTA" if metrics.get("tta") else ""))
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in metrics["per_class"].items():
        table.add_row(name, "absent" if iou is None else f"{iou:.4f}")
    table.add_section()
    for label, key in (("mIoU", "miou"), ("pixel acc", "pixel_acc"), ("mean class acc", "mean_class_acc"),
                       ("fwIoU", "fw_iou")):
        value = metrics[key]
        table.add_row(f"[bold]{label}[/bold]", "n/a" if value is None else f"[bold]{value:.4f}[/bold]")
    return table
