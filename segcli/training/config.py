"""What `segcli train` is asked to do (`TrainConfig`) and what it hands back (`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segcli.errors import SegcliError

OPTIMIZERS = ("adamw", "sgd")
LOSSES = ("ce", "ohem")
AUGMENT_PLACES = ("auto", "cpu", "device")


class BatchTooSmallError(SegcliError):
    """A batch size the model cannot train with (BatchNorm needs two values per channel)."""

    exit_code = 2


class TrainingInterrupted(SegcliError):
    """Ctrl-C or SIGTERM: the state is saved and the same command with `--resume` continues the run."""

    exit_code = 130

    def __init__(self, state_file: Path, iteration: int, total: int, after_last: bool = False) -> None:
        self.state_file, self.iteration, self.total, self.after_last = state_file, iteration, total, after_last
        if after_last:
            message = (f"Interrupted after the last iteration ({iteration}/{total}), before the checkpoint was "
                       f"written; state saved in {state_file}")
            hint = f"the same command with --resume {state_file} writes the checkpoint"
        else:
            message = f"Interrupted at iteration {iteration}/{total}; state saved in {state_file}"
            hint = f"continue with the same command plus --resume {state_file}"
        super().__init__(message, hint=hint)


@dataclass(frozen=True)
class TrainConfig:
    model: str                              # zoo name (aliases allowed)
    data_dir: str                           # VOC-format folder
    out: str                                # final safetensors checkpoint
    iters: int | None = None                # total iterations (the cap, with time_budget); or give epochs
    epochs: int | None = None
    batch_size: int = 8
    lr: float = 2e-3
    optimizer: str = "adamw"                # adamw trains these from-scratch models fastest here
    loss: str = "ce"                        # ce, or ohem: cross-entropy over the hard pixels only
    weight_decay: float = 1e-4
    warmup_iters: int = 0                   # linear warm-up before the poly decay (fresh optimizer on trained weights)
    crop: tuple[int, int] | None = None     # random crop; default: the training images' size
    scale_range: tuple[float, float] = (0.5, 2.0)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None              # start from this checkpoint (fine-tuning)
    resume: str | None = None               # continue from this state file
    state_path: str | None = None           # resumable state; default: <out>.state.pt
    overwrite: bool = False                 # replace an existing `out` (and a stale state file)
    save_every: int = 200
    log_every: int = 25
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    workers: int = 0                        # data loader processes (CPU augmentation)
    augment_on: str = "auto"                # auto: on the GPU when training there on same-size images
    time_budget: float | None = None        # seconds from the start to the last iteration; fixes the count
    split: str = "train"
    val_split: str | None = "val"           # evaluated at the end when the folder has it
    bn_recalibration_batches: int | None = None  # batches for precise BN at the end (None: 400 images; 0: off)
    max_pixels: int | None = None           # refuse bigger training images (None: segcli.imageio's default)

    @property
    def state_file(self) -> Path:
        return Path(self.state_path) if self.state_path else Path(f"{self.out}.state.pt")

    def check(self) -> None:
        """Raise SegcliError for choices that cannot work, before anything is loaded."""
        if self.optimizer not in OPTIMIZERS:
            raise SegcliError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.loss not in LOSSES:
            raise SegcliError(f"unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}")
        if self.augment_on not in AUGMENT_PLACES:
            raise SegcliError(f"unknown augmentation place {self.augment_on!r}: use one of {', '.join(AUGMENT_PLACES)}")
        if self.weights and self.resume:
            raise SegcliError("weights starts a new run and resume continues one: give only one of them",
                              hint="pass only one of --weights and --resume")
        if self.iters is not None and self.epochs is not None:
            raise SegcliError("give exactly one of iters and epochs", hint="pass only one of --iters and --epochs")
        if self.iters is None and self.epochs is None and self.time_budget is None:
            raise SegcliError("give exactly one of iters and epochs (or time_budget)",
                              hint="pass --iters, --epochs or --time-budget")
        if self.time_budget is not None and self.time_budget <= 0:
            raise SegcliError("time_budget must be a positive number of seconds")

    def to_state_dict(self) -> dict[str, Any]:
        """The config as plain lists and numbers (stored in state files, loadable with weights_only)."""
        from dataclasses import asdict

        values = asdict(self)
        values["crop"] = list(self.crop) if self.crop else None
        values["scale_range"] = list(self.scale_range)
        return values


@dataclass
class TrainResult:
    checkpoint: Path
    state_file: Path
    iterations: int
    losses: list[float]                     # per-iteration training loss, this process only
    seconds: float
    val_metrics: dict[str, Any] | None = None
