"""The training loop behind `segcli train`: cross-entropy (255 ignored), AdamW, poly LR, resumable.

Batches are a pure function of (seed, iteration): the sampler shuffles each epoch with
(seed, epoch) and hands every sample its own augmentation seed, and the global torch RNG is
re-seeded per iteration (dropout). A run resumed from a state file therefore continues
exactly as the uninterrupted run would have.

State files (`*.state.pt`, resumable) hold `model_state`, `optimizer_state`, `scheduler_state`,
`iteration` and `segcli_record`, and load with `torch.load(weights_only=True)`. The deliverable is a segcli
safetensors checkpoint (fp16, `save_segcli_checkpoint`) that carries its record.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segcli.checkpoints.loading import save_segcli_checkpoint, save_training_checkpoint
from segcli.checkpoints.record import IMAGENET_PREPROCESSING, CheckpointRecord, Preprocessing
from segcli.data.voc import SegmentationDataset, read_classes, read_dataset_name, read_split
from segcli.device import plan_execution
from segcli.errors import CheckpointError, DatasetError, SegcliError
from segcli.palettes import IGNORE_INDEX

OPTIMIZERS = ("adamw", "sgd")
LOSSES = ("ce", "ohem")
OHEM_THRESHOLD = 0.7        # a pixel is "hard" while its true class has probability below this
OHEM_MIN_KEPT = 0.25        # ... and at least this share of the valid pixels (the hardest) always counts


@dataclass(frozen=True)
class TrainConfig:
    model: str                              # zoo name (aliases allowed)
    data_dir: str                           # VOC-format folder
    out: str                                # final safetensors checkpoint
    iters: int | None = None                # total iterations; or give epochs
    epochs: int | None = None
    batch_size: int = 8
    lr: float = 2e-3
    optimizer: str = "adamw"                # adamw trains these from-scratch models fastest here
    loss: str = "ce"                        # ce, or ohem: cross-entropy over the hard pixels only
    weight_decay: float = 1e-4
    crop: tuple[int, int] | None = None     # random crop; default: the training images' size
    scale_range: tuple[float, float] = (0.5, 2.0)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None              # start from this checkpoint (fine-tuning)
    resume: str | None = None               # continue from this state file
    state_path: str | None = None           # resumable state; default: <out>.state.pt
    save_every: int = 200
    log_every: int = 25
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    workers: int = 0
    split: str = "train"
    val_split: str | None = "val"           # evaluated at the end when the folder has it
    bn_recalibration_batches: int = 50      # BatchNorm statistics recomputed for the final weights (0: off)

    @property
    def state_file(self) -> Path:
        return Path(self.state_path) if self.state_path else Path(f"{self.out}.state.pt")


@dataclass
class TrainResult:
    checkpoint: Path
    state_file: Path
    iterations: int
    losses: list[float]                     # per-iteration training loss, this process only
    seconds: float
    val_metrics: dict[str, Any] | None = None


def poly_factor(iteration: int, total: int, power: float = 0.9) -> float:
    """The poly schedule: lr = base * (1 - it / total) ** power."""
    return max(0.0, 1.0 - iteration / total) ** power


def batch_plan(num_samples: int, batch_size: int, seed: int, start: int, total: int) -> Iterator[list[tuple[int, int]]]:
    """Batches of (sample index, augmentation seed) for iterations start..total-1."""
    per_epoch = max(1, num_samples // batch_size)
    for iteration in range(start, total):
        epoch, position = divmod(iteration, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(num_samples)
        if num_samples < batch_size:
            order = np.resize(order, batch_size)
        chosen = order[position * batch_size:(position + 1) * batch_size]
        yield [(int(index), int(seed * 1_000_003 + iteration * batch_size + slot) % 2**63)
               for slot, index in enumerate(chosen)]


def training_plan(device: str, precision: str):
    """plan_execution, except that `auto` trains in fp32 on the CPU: CPU bf16 autocast gave gradients
    far from fp32's for some zoo models (cosine similarity 0.22 for DeepLabV3+ MobileNet at
    initialisation, 0.09 for FCN-32s, which then did not learn at all). Ask for bf16 to get it."""
    plan = plan_execution(device, precision)
    if precision == "auto" and plan.device.type == "cpu" and plan.precision != "fp32":
        plan = plan_execution(device, "fp32")
    return plan


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Cross-entropy with 255 ignored; `ohem` averages it over the hard pixels only.

    OHEM (online hard example mining, as in mmsegmentation's OHEMPixelSampler): pixels whose true
    class has probability below OHEM_THRESHOLD, and never fewer than OHEM_MIN_KEPT of the valid
    pixels (the highest losses). Background, which is most of every scene, then stops drowning out
    the small and thin classes that decide the mean IoU.
    """
    pixel_losses = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX, reduction="none")
    valid = masks != IGNORE_INDEX
    if kind == "ce":
        count = valid.sum()
        return pixel_losses.sum() / count.clamp(min=1)
    if kind != "ohem":
        raise SegcliError(f"unknown loss {kind!r}: use one of {', '.join(LOSSES)}")
    losses = pixel_losses[valid]
    if losses.numel() == 0:
        return pixel_losses.sum() * 0.0
    hard = losses > -math.log(OHEM_THRESHOLD)
    at_least = max(1, int(OHEM_MIN_KEPT * losses.numel()))
    if int(hard.sum()) < at_least:
        return losses.topk(at_least, sorted=False).values.mean()
    return losses[hard].mean()


def build_record(config: TrainConfig, categories: tuple[str, ...], dataset: str,
                 preprocessing: Preprocessing = IMAGENET_PREPROCESSING) -> CheckpointRecord:
    from segcli.models import canonical_name

    model = canonical_name(config.model)
    return CheckpointRecord(
        name=Path(config.out).name.split(".")[0], model=model, dataset=dataset, categories=categories,
        filename=Path(config.out).name, layout="segcli", palette="voc", preprocessing=preprocessing,
        model_kwargs=tuple(sorted(config.model_kwargs.items())), license="MIT",
        notes="trained by segcli train",
    )


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    raise SegcliError(f"unknown optimizer {config.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")


def _starting_model(config: TrainConfig) -> nn.Module:
    """The `--weights` checkpoint's model, built as the model it was made for (its record's
    preprocessing carries over): fine-tuning when that is `--model`, else an initialisation of the
    tensors both models share (e.g. FCN-32s from an FCN-8s, LR-ASPP from a DeepLab v3 MobileNetV3)."""
    from segcli.engine import SegmentationEngine

    return SegmentationEngine.load(source_model(config.weights, config.model), weights=config.weights,
                                   device="cpu", precision="fp32")


def source_model(weights: str, model: str) -> str:
    """The zoo model a checkpoint was made for: its own record's (a segcli file, a manifest name), else `model`."""
    from segcli.checkpoints.loading import TRAINING_RECORD_KEY, read_checkpoint_file, read_segcli_metadata
    from segcli.checkpoints.manifest import load_manifest

    path = Path(weights)
    if path.is_file():
        metadata = read_segcli_metadata(path)
        if metadata is not None:
            return metadata.record.model
        if path.name.endswith(".state.pt"):
            stored = read_checkpoint_file(path, mmap=True).get(TRAINING_RECORD_KEY)
            if isinstance(stored, dict) and isinstance(stored.get("model"), str):
                return stored["model"]
        return model
    record = load_manifest().get(weights)
    return record.model if record is not None else model


def _copy_matching_weights(model: nn.Module, source: nn.Module, weights: str) -> list[str]:
    """Copy every tensor of the same name and shape; returns the keys left as built (e.g. a new head)."""
    own = model.state_dict()
    copied = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    if not copied:
        raise CheckpointError(f"--weights {weights}: no tensor fits this model; is it a checkpoint of it?")
    model.load_state_dict(copied, strict=False)
    return sorted(set(own) - set(copied))


def train(config: TrainConfig, model_factory: Callable[[int], nn.Module] | None = None,
          console=None) -> TrainResult:
    """Train `config.model` on `config.data_dir`; `model_factory(num_classes)` overrides the zoo (tests)."""
    from rich.console import Console

    console = console or Console()
    if config.optimizer not in OPTIMIZERS:
        raise SegcliError(f"unknown optimizer {config.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if config.loss not in LOSSES:
        raise SegcliError(f"unknown loss {config.loss!r}: use one of {', '.join(LOSSES)}")
    if config.weights and config.resume:
        raise SegcliError("--weights starts a new run and --resume continues one: give only one of them")
    categories = read_classes(config.data_dir)
    pairs = read_split(config.data_dir, config.split)
    source = _starting_model(config) if config.weights else None
    preprocessing = source.record.preprocessing if source is not None else IMAGENET_PREPROCESSING
    record = build_record(config, categories, read_dataset_name(config.data_dir), preprocessing)
    dataset = SegmentationDataset(pairs, len(categories), record.preprocessing, crop=config.crop,
                                  scale_range=config.scale_range)
    if config.crop is None and len({m.shape for m in dataset.masks}) > 1:
        raise DatasetError("training images differ in size: pass --crop HxW")
    total = _total_iterations(config, len(dataset))

    torch.manual_seed(config.seed)
    if model_factory is not None:
        model = model_factory(len(categories))
    else:
        from segcli.models import build_model

        model = build_model(config.model, len(categories), **config.model_kwargs)
    if source is not None:
        kept = _copy_matching_weights(model, source.model, config.weights)
        if source.record.model == record.model:
            console.print(f"fine-tuning from {source.source}; {len(kept)} tensors start fresh")
        else:
            console.print(f"initialising {record.model} from {source.source} (a {source.record.model} "
                          f"checkpoint): the tensors both models share are copied, {len(kept)} start fresh")
    plan = training_plan(config.device, config.precision)
    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: poly_factor(it, total))
    start = 0
    if config.resume:
        start = _restore_state(Path(config.resume), record, model, optimizer, scheduler, total)
        console.print(f"resumed from {config.resume} at iteration {start}/{total}")

    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=list(batch_plan(len(dataset), config.batch_size, config.seed, start, total)),
        num_workers=config.workers, persistent_workers=False,
    )
    console.print(f"training {record.model} {dict(config.model_kwargs)} on {len(dataset)} images, "
                  f"{total} iterations, batch {config.batch_size}, {plan.device.type} {plan.precision}")
    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    with _progress(console, total, start) as advance:
        for iteration, (images, masks) in enumerate(loader, start=start):
            torch.manual_seed(config.seed * 7919 + iteration)  # dropout draws, reproducible on resume
            images = images.to(plan.device, non_blocking=True)
            masks = masks.to(plan.device, non_blocking=True)
            if plan.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with plan.autocast():
                logits = model(images)
            loss = segmentation_loss(logits, masks, config.loss)
            if not torch.isfinite(loss):
                raise SegcliError(f"the loss became {loss.item()} at iteration {iteration}: lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.item()))
            done = iteration + 1
            advance(done, losses[-1], scheduler.get_last_lr()[0], config.log_every)
            if done % config.save_every == 0 or done == total:
                _save_state(config.state_file, record, model, optimizer, scheduler, done, config)
    seconds = time.perf_counter() - started
    recalibrated = recalibrate_batch_norm(model, dataset, plan, config.batch_size, config.seed,
                                          batches=config.bn_recalibration_batches)
    if recalibrated:
        console.print(f"BatchNorm statistics recomputed for the final weights over {recalibrated} batches")
    val_metrics = _final_validation(config, model, record, plan, console)
    extra = {"iterations": total, "seed": config.seed, "data": str(config.data_dir), "batch_size": config.batch_size,
             "lr": config.lr, "optimizer": config.optimizer, "loss": config.loss, "precision": plan.precision,
             "train_seconds": round(seconds, 1), "bn_recalibration_batches": recalibrated}
    if val_metrics is not None:
        extra["val_miou"] = val_metrics["miou"]
    checkpoint = save_segcli_checkpoint(Path(config.out), model, record, extra=extra, half=True)
    console.print(f"wrote {checkpoint} ({checkpoint.stat().st_size / 1e6:.1f} MB, fp16) after {seconds:.0f} s")
    return TrainResult(checkpoint, config.state_file, total, losses, seconds, val_metrics)


def _total_iterations(config: TrainConfig, num_samples: int) -> int:
    if (config.iters is None) == (config.epochs is None):
        raise SegcliError("give exactly one of --iters and --epochs")
    if config.iters is not None:
        total = config.iters
    else:
        total = config.epochs * max(1, num_samples // config.batch_size)
    if total < 1:
        raise SegcliError("training needs at least one iteration")
    return total


def _save_state(path: Path, record: CheckpointRecord, model: nn.Module, optimizer, scheduler,
                iteration: int, config: TrainConfig) -> None:
    config_dict = asdict(config)
    config_dict["crop"] = list(config.crop) if config.crop else None
    config_dict["scale_range"] = list(config.scale_range)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_training_checkpoint(path, {
        "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict(), "iteration": iteration,
        "segcli_record": record.to_dict(), "config": config_dict,
    })


def _restore_state(path: Path, record: CheckpointRecord, model: nn.Module, optimizer, scheduler, total: int) -> int:
    if not path.is_file():
        raise CheckpointError(f"--resume {path}: no such state file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"--resume {path}: not a segcli training state ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not {"iteration", "segcli_record", "optimizer_state"} <= set(state):
        raise CheckpointError(f"--resume {path}: not a segcli training state (use a *.state.pt file)")
    saved = CheckpointRecord.from_dict(state["segcli_record"])
    if saved.model != record.model or saved.categories != record.categories or saved.kwargs != record.kwargs:
        raise CheckpointError(f"--resume {path}: it trains {saved.model} {saved.kwargs} on {len(saved.categories)} "
                              f"classes, not {record.model} {record.kwargs} on {len(record.categories)}")
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    scheduler.load_state_dict(state["scheduler_state"])
    iteration = int(state["iteration"])
    if iteration >= total:
        raise CheckpointError(f"--resume {path}: already at iteration {iteration}; raise --iters above it")
    return iteration


def recalibrate_batch_norm(model: nn.Module, dataset, plan, batch_size: int, seed: int, batches: int = 50) -> int:
    """Recompute every BatchNorm's running mean/variance for the model's final weights ("precise BN").

    The running averages kept during training lag behind weights that change fast (torchvision's
    MobileNetV3 uses momentum 0.01): a from-scratch model can fit its training batches (loss 0.06)
    yet predict badly in eval mode (loss 1.3) until its statistics are recomputed. Returns the
    number of batches used (0 when the model has no BatchNorm or `batches` is 0).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or batches <= 0:
        return 0
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    was_training = model.training
    augmenting = getattr(dataset, "augment", None)
    if augmenting is not None:
        dataset.augment = False  # whole images at scale 1, as the model will see them in `predict`
    model.train()
    used = 0
    try:
        with torch.no_grad():
            for plan_batch in batch_plan(len(dataset), batch_size, seed + 1, 0, batches):
                samples = [dataset[item] for item in plan_batch]
                if len(samples) < 2:
                    continue
                images = torch.stack([image for image, _ in samples]).to(plan.device)
                if plan.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                model(images)
                used += 1
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)
        if augmenting is not None:
            dataset.augment = augmenting
    return used


def _final_validation(config: TrainConfig, model: nn.Module, record: CheckpointRecord, plan, console):
    split_file = Path(config.data_dir) / "ImageSets" / "Segmentation" / f"{config.val_split}.txt"
    if not config.val_split or not split_file.is_file():
        return None
    from segcli.engine import SegmentationEngine
    from segcli.evaluation import evaluate_folder

    model.eval()
    engine = SegmentationEngine(model, record, plan)
    metrics = evaluate_folder(engine, config.data_dir, config.val_split)
    console.print(f"{config.val_split}: mIoU {metrics['miou']:.4f}, pixel acc {metrics['pixel_acc']:.4f}")
    return metrics


class _progress:
    """A rich progress bar on a terminal; a log line every `log_every` iterations otherwise."""

    def __init__(self, console, total: int, start: int) -> None:
        self.console, self.total, self.start = console, total, start
        self.window: list[float] = []
        self.started = time.perf_counter()
        self.bar = None

    def __enter__(self) -> Callable[[int, float, float, int], None]:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.4f} lr {task.fields[lr]:.2e}"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=self.console)
            self.bar.start()
            self.task = self.bar.add_task("train", total=self.total, completed=self.start, loss=math.nan, lr=0.0)
        return self.advance

    def advance(self, done: int, loss: float, lr: float, log_every: int) -> None:
        self.window.append(loss)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, loss=float(np.mean(self.window[-log_every:])), lr=lr)
        elif done % log_every == 0 or done == self.total:
            elapsed = time.perf_counter() - self.started
            rate = elapsed / max(1, done - self.start)
            eta = rate * (self.total - done)
            self.console.print(f"iter {done}/{self.total} loss {np.mean(self.window[-log_every:]):.4f} "
                               f"lr {lr:.2e} {rate:.2f} s/it elapsed {elapsed:.0f} s ETA {eta:.0f} s")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

