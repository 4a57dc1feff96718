"""Training one compare-upsampling decoder on cached encoder features: `prepare` -> `fit` -> `finish`.

`fit` is segcli's generic loop (`segcli.training.fit`: poly schedule, loss checks, Ctrl-C); this
module only supplies what is specific to the decoders: the model, the feature batches, and a
validation curve (mIoU on whole cached val images every `eval_every` iterations). Every method
gets the same batches, schedule and, under one seed, the same initial weights outside the
upsampling layers (those are built last), so the upsampling is the only difference.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from segcli.device import plan_execution
from segcli.training.loop import FitOutcome, FitSettings, fit
from segcli.training.losses import segmentation_loss
from segcli.training.schedule import PolySchedule
from segcli.upsampling.features import FeatureBatches, FeatureCache, score_cached
from segcli.upsampling.network import DEFAULT_WIDTHS, UpsamplingDecoder


@dataclass(frozen=True)
class DecoderTraining:
    iterations: int = 1500
    batch_size: int = 8
    crop: int = 64                  # pixels, a multiple of the encoder stride 16
    lr: float = 3e-3                # AdamW, poly decay 0.9 to zero
    weight_decay: float = 1e-4
    loss: str = "ohem"              # segcli.training.segmentation_loss: ce, or ohem (hard pixels)
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    eval_every: int = 125           # iterations between points of the validation curve
    log_every: int = 25


@dataclass
class DecoderRun:
    method: str
    seed: int
    settings: DecoderTraining
    decoder: UpsamplingDecoder
    optimizer: torch.optim.Optimizer
    schedule: PolySchedule
    batches: FeatureBatches
    curve: dict[str, list] = field(default_factory=lambda: {"iteration": [], "loss": [], "val_iteration": [],
                                                            "val_miou": [], "val_pixel_acc": []})


def prepare(method: str, seed: int, train: FeatureCache, num_classes: int, settings: DecoderTraining) -> DecoderRun:
    """The decoder (initialised under `seed`), its optimizer, schedule and batches."""
    torch.manual_seed(seed)
    decoder = UpsamplingDecoder(num_classes, method, settings.widths).train()
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = PolySchedule(optimizer, settings.iterations)
    batches = FeatureBatches(train, settings.batch_size, seed, settings.crop)
    return DecoderRun(method, seed, settings, decoder, optimizer, schedule, batches)


def train_decoder(run: DecoderRun, val: FeatureCache, num_classes: int,
                  log: Callable[[str], None] = print) -> FitOutcome:
    """`segcli.training.fit` on the run, recording the loss and validation curves."""
    settings = run.settings
    plan = plan_execution("cpu", "fp32", channels_last=False)
    fit_settings = FitSettings(total=settings.iterations, seed=run.seed, log_every=settings.log_every,
                               save_every=10**9)
    started = time.perf_counter()

    def on_progress(done: int, total: int, lr: float, mean_loss: float | None) -> None:
        if mean_loss is not None and (done % settings.log_every == 0 or done == total):  # not the first peek
            run.curve["iteration"].append(done)
            run.curve["loss"].append(round(mean_loss, 5))
        if done % settings.eval_every == 0 or done == total:
            scores = score_cached(run.decoder, val, num_classes)
            run.curve["val_iteration"].append(done)
            run.curve["val_miou"].append(round(scores["miou"], 4))
            run.curve["val_pixel_acc"].append(round(scores["pixel_acc"], 4))
            loss_text = f"{run.curve['loss'][-1]:.4f}" if run.curve["loss"] else "-"
            log(f"{run.method} seed {run.seed}: {done}/{total} loss {loss_text} "
                f"lr {lr:.2e} val mIoU {scores['miou']:.4f} {time.perf_counter() - started:.0f}s")

    loss = functools.partial(segmentation_loss, kind=run.settings.loss)
    return fit(run.decoder, run.batches, run.optimizer, run.schedule, plan, loss, fit_settings,
               on_progress=on_progress)


def finish(run: DecoderRun, outcome: FitOutcome, out_dir: Path, categories: tuple[str, ...],
           extra: dict[str, Any] | None = None) -> Path:
    """Write the decoder (fp16 safetensors, record and training settings in its metadata)."""
    from segcli.upsampling.decoders import decoder_filename, save_decoder

    val_miou = run.curve["val_miou"][-1] if run.curve["val_miou"] else None
    training = {**asdict(run.settings), "seed": run.seed, "iterations_done": outcome.iteration,
                "train_seconds": round(outcome.seconds, 1), "optimizer": "adamw, poly 0.9",
                "torch": torch.__version__, **(extra or {})}
    metrics = {"val_miou": val_miou} if val_miou is not None else {}
    return save_decoder(out_dir / decoder_filename(run.method, run.seed), run.decoder.eval(), categories,
                        run.seed, metrics=metrics, training=training)
