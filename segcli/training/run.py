"""`segcli train` as three steps: `prepare` (data, model, optimizer, batches), `fit`, `finish` (checkpoint)."""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.record import IMAGENET_PREPROCESSING, CheckpointRecord
from segcli.data.voc import SegmentationDataset, read_classes, read_dataset_name, read_split
from segcli.device import ExecutionPlan, plan_execution
from segcli.engine import preprocess
from segcli.errors import DatasetError, OutputError, SegcliError
from segcli.training.batches import DeviceBatches, LoaderBatches
from segcli.training.batchnorm import recalibrate_batch_norm
from segcli.training.config import BatchTooSmallError, TrainConfig, TrainingInterrupted, TrainResult
from segcli.training.loop import FitOutcome, FitSettings, fit
from segcli.training.losses import segmentation_loss
from segcli.training.progress import TrainingProgress
from segcli.training.schedule import PolySchedule
from segcli.training.starting import build_record, copy_matching_weights, starting_engine
from segcli.training.state import read_state, restore_state, save_state

UNCAPPED = 10**9  # the iteration cap of a run sized by --time-budget alone


@dataclass
class PreparedRun:
    """Everything `fit` and `finish` need, built once by `prepare`."""

    config: TrainConfig
    record: CheckpointRecord
    dataset: SegmentationDataset
    model: nn.Module
    plan: ExecutionPlan
    optimizer: torch.optim.Optimizer
    schedule: PolySchedule
    batches: Any
    settings: FitSettings

    def save_state(self, iteration: int, total: int) -> None:
        self.schedule.total = total
        save_state(self.config.state_file, self.record, self.model, self.optimizer, self.schedule, iteration,
                   self.config.to_state_dict())

    def loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return functools.partial(segmentation_loss, kind=self.config.loss)


def training_plan(device: str, precision: str) -> ExecutionPlan:
    """plan_execution, except that `auto` trains in fp32 on the CPU: CPU bf16 autocast gave gradients
    far from fp32's for some zoo models (cosine similarity 0.22 for DeepLabV3+ MobileNet at
    initialisation, 0.09 for FCN-32s, which then did not learn at all). Ask for bf16 to get it."""
    plan = plan_execution(device, precision)
    if precision == "auto" and plan.device.type == "cpu" and plan.precision != "fp32":
        plan = plan_execution(device, "fp32")
    return plan


def train(config: TrainConfig, model_factory: Callable[[int], nn.Module] | None = None,
          console=None) -> TrainResult:
    """prepare -> fit -> finish. Ctrl-C/SIGTERM: state saved, then `TrainingInterrupted`."""
    from rich.console import Console

    console = console or Console()
    run = prepare(config, model_factory, console)
    with TrainingProgress(console, run.settings.total, run.settings.start) as progress:
        outcome = fit(run.model, run.batches, run.optimizer, run.schedule, run.plan, run.loss(), run.settings,
                      on_save=run.save_state, on_progress=progress)
    if outcome.stopped:
        raise TrainingInterrupted(config.state_file, outcome.iteration, outcome.total,
                                  after_last=outcome.iteration >= outcome.total)
    try:
        return finish(run, outcome, console)
    except KeyboardInterrupt:
        raise TrainingInterrupted(config.state_file, outcome.iteration, outcome.total, after_last=True) from None


def prepare(config: TrainConfig, model_factory: Callable[[int], nn.Module] | None = None,
            console=None) -> PreparedRun:
    """Check the outputs, read the data, build (or restore) the model and its optimizer."""
    started = time.monotonic()
    config.check()
    _check_outputs(config)
    categories = read_classes(config.data_dir)
    source = starting_engine(config) if config.weights else None
    preprocessing = source.record.preprocessing if source is not None else IMAGENET_PREPROCESSING
    record = build_record(config, categories, read_dataset_name(config.data_dir), preprocessing)
    dataset = SegmentationDataset(read_split(config.data_dir, config.split), len(categories), record.preprocessing,
                                  preprocess, crop=config.crop, scale_range=config.scale_range, max_pixels=config.max_pixels)
    if config.crop is None and len({m.shape for m in dataset.masks}) > 1:
        raise DatasetError("training images differ in size: give a crop size (crop)", hint="pass --crop HxW")
    state = read_state(Path(config.resume)) if config.resume else None
    total = _total_iterations(config, len(dataset), state)
    plan = training_plan(config.device, config.precision)
    model = _build_model(config, record, len(categories), model_factory, source, plan, console)
    _check_batch_size(model, config, dataset, plan, record.model)
    optimizer = _make_optimizer(config, model, plan)
    schedule = PolySchedule(optimizer, total, warmup=config.warmup_iters)
    start = 0
    if state is not None:
        start = int(restore_state(Path(config.resume), record, model, optimizer)["iteration"])
        left = "no iterations left: finishing the run" if start >= total else f"{total - start} to go"
        console.print(f"resumed from {config.resume} at iteration {start}/{total}; {left}", markup=False)
    deadline = started + config.time_budget if config.time_budget else None
    settings = FitSettings(total=max(total, start), start=start, seed=config.seed, log_every=config.log_every,
                           save_every=config.save_every, deadline=deadline)
    run = PreparedRun(config, record, dataset, model, plan, optimizer, schedule,
                      _batch_source(config, dataset, plan), settings)
    _announce(run, console)
    return run


def finish(run: PreparedRun, outcome: FitOutcome, console) -> TrainResult:
    """Recompute BatchNorm statistics, validate, write the fp16 checkpoint with its record."""
    config = run.config
    recalibrated = _recalibrate(run, console)
    val_metrics = _final_validation(config, run.model, run.record, run.plan, console)
    extra = {"iterations": outcome.iteration, "seed": config.seed, "data": str(config.data_dir),
             "batch_size": config.batch_size, "crop": list(config.crop) if config.crop else None,
             "lr": config.lr, "warmup_iters": config.warmup_iters, "optimizer": config.optimizer,
             "loss": config.loss, "precision": run.plan.precision, "device": run.plan.device.type,
             "train_seconds": round(outcome.seconds, 1), "bn_recalibration_batches": recalibrated}
    if config.time_budget:
        extra["time_budget_seconds"] = config.time_budget
    if val_metrics is not None:
        extra["val_miou"] = val_metrics["miou"]
    checkpoint = save_segcli_checkpoint(Path(config.out), run.model, run.record, extra=extra, half=True)
    console.print(f"wrote {checkpoint} ({checkpoint.stat().st_size / 1e6:.1f} MB, fp16) after "
                  f"{outcome.iteration} iterations, {outcome.seconds:.0f} s of training", markup=False)
    if config.state_file.is_file():
        console.print(f"resumable state kept in {config.state_file} ({config.state_file.stat().st_size / 1e6:.1f} "
                      "MB): delete it once you will not continue this run with --resume", markup=False)
    return TrainResult(checkpoint, config.state_file, outcome.iteration, outcome.losses, outcome.seconds, val_metrics)


def _recalibrate(run: PreparedRun, console) -> int:
    """Precise BatchNorm as a stage of its own: a spinner on a terminal, then one line with its time."""
    config = run.config
    started = time.perf_counter()
    with console.status("recomputing BatchNorm statistics for the final weights"):
        batches, images = recalibrate_batch_norm(run.model, run.dataset, run.plan, config.batch_size, config.seed,
                                                 batches=config.bn_recalibration_batches)
    if batches:
        console.print(f"BatchNorm statistics recomputed for the final weights over {batches} batches "
                      f"({images} images) in {time.perf_counter() - started:.1f} s", markup=False)
    return batches


def _check_outputs(config: TrainConfig) -> None:
    """Nothing a user already has is replaced without --overwrite: the checkpoint, or another run's state."""
    out, state = Path(config.out), config.state_file
    _check_writable(config, out, state)
    if out.exists() and not config.overwrite:
        raise OutputError(f"{out} already exists (overwrite=False)",
                          hint="pass --overwrite to replace it, or choose another --out")
    resuming_it = config.resume is not None and Path(config.resume).resolve() == state.resolve()
    if state.exists() and not resuming_it and not config.overwrite:
        raise OutputError(f"{state} already exists (the state of an earlier run): continue that run (resume), "
                          "or overwrite it to start afresh (overwrite)",
                          hint=f"continue that run with --resume {state}, or pass --overwrite to start afresh")


def _check_writable(config: TrainConfig, out: Path, state: Path) -> None:
    """Before any training: --out and the state file in folders a file can be written in, neither an input of the
    run (the --weights checkpoint, the --resume state where --out would land, the data folder's lists)."""
    from segcli.outputs.report_file import ReportFile, check_report_files

    data = Path(config.data_dir)
    inputs = [data / "dataset.json", data / "classes.txt", *(data / "ImageSets" / "Segmentation").glob("*.txt")]
    inputs += [Path(path) for path in (config.weights, config.resume) if path]
    check_report_files([ReportFile("--out", out, lambda path: True)], inputs, overwrite=True)
    state_inputs = [path for path in inputs if config.resume is None or path != Path(config.resume)]
    check_report_files([ReportFile("--state", state, lambda path: True)], state_inputs, overwrite=True)


def _total_iterations(config: TrainConfig, num_samples: int, state: dict | None) -> int:
    if config.iters is not None:
        return config.iters
    if config.epochs is not None:
        return config.epochs * max(1, num_samples // config.batch_size)
    if state is not None and int(state.get("total", 0)) > 0:
        return int(state["total"])  # the count an earlier --time-budget fixed
    return UNCAPPED


def _build_model(config: TrainConfig, record: CheckpointRecord, num_classes: int, model_factory, source,
                 plan: ExecutionPlan, console) -> nn.Module:
    torch.manual_seed(config.seed)
    if model_factory is not None:
        model = model_factory(num_classes)
    else:
        from segcli.models import build_model

        model = build_model(config.model, num_classes, **config.model_kwargs)
    if source is not None:
        kept = copy_matching_weights(model, source.model, config.weights)
        if source.record.model == record.model:
            console.print(f"fine-tuning from {source.source}; {len(kept)} tensors start fresh", markup=False)
        else:
            console.print(f"initialising {record.model} from {source.source} (a {source.record.model} "
                          f"checkpoint): the tensors both models share are copied, {len(kept)} start fresh",
                          markup=False)
    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if plan.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: the autotuned kernels are reused every step
    return model


def _check_batch_size(model: nn.Module, config: TrainConfig, dataset, plan: ExecutionPlan, name: str) -> None:
    """--batch 1 fails at the first step for models with BatchNorm after global pooling: say so up front."""
    if config.batch_size > 1 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    height, width = config.crop or dataset.masks[0].shape
    probe = copy.deepcopy(model).train()  # a copy: the probe must not move the running statistics
    try:
        with torch.no_grad():
            probe(torch.zeros(1, 3, height, width, device=plan.device))
    except ValueError as exc:
        if "more than 1 value per channel" not in str(exc):
            raise
        raise BatchTooSmallError(f"a batch size of 1 cannot train {name}: a BatchNorm layer after global pooling sees "
                                 "one value per channel; use a batch size of 2 or more",
                                 hint="use --batch-size 2 or more") from None


def _make_optimizer(config: TrainConfig, model: nn.Module, plan: ExecutionPlan) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        # fused: one kernel for the whole update instead of a dozen per step on a GPU
        fused = True if plan.device.type == "cuda" else None
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    raise SegcliError(f"unknown optimizer {config.optimizer!r}")


def _batch_source(config: TrainConfig, dataset: SegmentationDataset, plan: ExecutionPlan):
    on_device = config.augment_on == "device" or (config.augment_on == "auto" and plan.device.type == "cuda")
    if on_device:
        source = DeviceBatches.from_dataset(dataset, config.batch_size, config.seed, plan.device)
        if source is not None:
            return source
        if config.augment_on == "device":
            raise SegcliError("augmenting on the device needs training images of one size that are not resized "
                              "first: augment on the CPU (augment_on='cpu')", hint="use --augment-on cpu")
    return LoaderBatches(dataset, config.batch_size, config.seed, config.workers,
                         pin_memory=plan.device.type == "cuda")


def _announce(run: PreparedRun, console) -> None:
    config, settings = run.config, run.settings
    options = ", ".join(f"{key}={value}" for key, value in sorted(config.model_kwargs.items()))
    what = f"{run.record.model} ({options})" if options else run.record.model
    if config.time_budget:
        count = f"iterations fitted to a {config.time_budget:g} s budget"
        if settings.total < UNCAPPED:
            count = f"at most {settings.total} {count}"
    else:
        count = f"{settings.total} iterations"
    place = "on the device" if isinstance(run.batches, DeviceBatches) else "on the CPU"
    console.print(f"training {what} on {len(run.dataset)} images, {count}, batch {config.batch_size}, "
                  f"{run.plan.device.type} {run.plan.precision}, augmentation {place}", markup=False)
    console.print(f"checkpoint: {config.out} (written at the end); resumable state: {config.state_file} "
                  f"(every {config.save_every} iterations and on Ctrl-C)", markup=False)


def _final_validation(config: TrainConfig, model: nn.Module, record: CheckpointRecord, plan: ExecutionPlan,
                      console) -> dict | None:
    split_file = Path(config.data_dir) / "ImageSets" / "Segmentation" / f"{config.val_split}.txt"
    if not config.val_split or not split_file.is_file() or not split_file.read_text().strip():
        return None  # no val split, or an empty one (`segcli data synth --val-fraction 0`)
    from segcli.engine import SegmentationEngine
    from segcli.loaded_model import LoadedModel
    from segcli.evaluation import evaluate_folder
    from segcli.inference_options import InferenceOptions

    model.eval()
    options = InferenceOptions(precision=plan.precision, channels_last=plan.channels_last)  # as it trained
    engine = SegmentationEngine.from_checkpoint(LoadedModel(model, record), device=plan.device, options=options)
    metrics = evaluate_folder(engine, config.data_dir, config.val_split)
    console.print(f"{config.val_split}: mIoU {metrics['miou']:.4f}, pixel acc {metrics['pixel_acc']:.4f}")
    return metrics
