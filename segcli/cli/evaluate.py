"""`segcli evaluate`: mIoU, pixel accuracy and per-class IoU on a labelled VOC-format folder."""

from __future__ import annotations

import click

from segcli.cli.crf_options import crf_options
from segcli.cli.options import device_option, max_pixels_option, model_option, overwrite_option, precision_option, \
    weights_option
from segcli.cli.predict_options import tta_option
from segcli.cli.report_files import announce, check_reports, checkpoint_files, data_files
from segcli.cli.tables import STDOUT, Column, json_option, print_table, write_json


@click.command("evaluate")
@model_option
@weights_option
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="VOC-format folder with JPEGImages/, SegmentationClass/, ImageSets/Segmentation/.")
@click.option("--split", default="val", show_default=True, help="Split file under ImageSets/Segmentation/.")
@json_option
@tta_option
@crf_options
@device_option
@precision_option
@max_pixels_option
@overwrite_option("Replace an existing --json file segcli did not write (never the checkpoint or a file of --data).")
def evaluate(model: str, weights: str | None, data_dir: str, split: str, json_path: str | None, tta, crf,
             device: str, precision: str, max_pixels: int | None, overwrite: bool) -> None:
    """Measure mIoU and pixel accuracy on a labelled folder, with predict's exact preprocessing."""
    from segcli.outputs.report_file import json_with_keys

    # the split and the --json file are checked before the model loads (seconds for a large one)
    inputs = data_files(data_dir, split) + checkpoint_files(model, weights)
    check_reports([("--json", json_path, json_with_keys(*EVALUATE_JSON_KEYS))], inputs, overwrite)
    from rich.console import Console
    from rich.progress import Progress

    from segcli.engine import SegmentationEngine
    from segcli.evaluation import evaluate_folder
    from segcli.inference_options import InferenceOptions

    options = InferenceOptions(precision=precision, tta=tta, crf=crf)
    console = Console(stderr=True)  # progress and notes; stdout holds only the table or the JSON
    engine = SegmentationEngine.load(model, weights=weights, device=device, options=options)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("evaluating", total=None)
        metrics = evaluate_folder(engine, data_dir, split, max_pixels=max_pixels,
                                  on_image=lambda done, total: progress.update(task, completed=done, total=total))
    from segcli.execution_policy import ran_in

    precision, memory_format = ran_in(engine.plan, engine.policy)  # what ran (--precision auto: the policy chose)
    metrics.update(weights=engine.source, device=engine.plan.device.type, precision=precision,
                   memory_format=memory_format, tta=tta is not None, **_measured_on(data_dir))
    if json_path is not None:
        write_json(metrics, json_path)
    if json_path == STDOUT:
        return
    from segcli.cli.tables import stdout_is_terminal

    if not stdout_is_terminal():  # plain rows on stdout: their title on stderr, where a reader sees it
        console.print(_title(metrics), highlight=False, markup=False, soft_wrap=True)
    print_table(_title(metrics), METRICS_COLUMNS, metrics_rows(metrics))
    excluded = ", ".join(metrics["excluded_classes"]) or \
        "none (every class appears in the prediction or the ground truth)"
    console.print(f"excluded from mIoU (absent from both prediction and ground truth): {excluded}", highlight=False,
                  soft_wrap=True)
    if metrics["crf"]:
        console.print(metrics["crf"]["text"], highlight=False, soft_wrap=True)
    if json_path is not None:
        announce(json_path)


EVALUATE_JSON_KEYS = ("miou", "per_class", "checkpoint", "split")  # how segcli knows its own --json file
METRICS_COLUMNS = (Column("class or measure", keep_whole=True), Column("value", numeric=True))
SUMMARY_ROWS = (("mIoU", "miou"), ("pixel acc", "pixel_acc"), ("mean class acc", "mean_class_acc"), ("fwIoU", "fw_iou"))


def _measured_on(data_dir: str) -> dict[str, str]:
    """The data's name (from its dataset.json) and how the mIoU row describes it."""
    from segcli.checkpoints.record import MIOU_MEASURED_ON
    from segcli.data.voc import read_dataset_name

    name = read_dataset_name(data_dir)
    return {"dataset": name, "miou_on": MIOU_MEASURED_ON.get(name, f"{name} data")}


def _title(metrics: dict) -> str:
    return (f"{metrics['checkpoint']} on {metrics['data']} [{metrics['split']}], {metrics['images']} images"
            + (", CRF" if metrics["crf"] else "") + (", TTA" if metrics.get("tta") else ""))


def metrics_rows(metrics: dict) -> list[list[str]]:
    """Per-class IoU, then the summary figures (the mIoU row says what data it was measured on)."""
    rows = [[name, "absent" if iou is None else f"{iou:.4f}"] for name, iou in metrics["per_class"].items()]
    for label, key in SUMMARY_ROWS:
        value = metrics[key]
        shown = f"mIoU on {metrics['miou_on']}" if key == "miou" and metrics.get("miou_on") else label
        rows.append([shown, "n/a" if value is None else f"{value:.4f}"])
    return rows
