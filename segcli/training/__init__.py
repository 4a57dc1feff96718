"""Training behind `segcli train`: `prepare` -> `fit` -> `finish` (`train` runs all three).

- `fit` (loop.py) is model-agnostic: a model, a batch source (anything with `batches(start)`), an
  optimizer and `PolySchedule`, an `ExecutionPlan` and a loss; it stops cleanly on Ctrl-C/SIGTERM
  and, given a deadline, fixes the iteration count from the measured speed so the poly schedule
  still ends at zero on time.
- `prepare`/`finish` (run.py) are the zoo-model specifics: VOC data, `--weights`, state files,
  BatchNorm recalibration, validation and the fp16 checkpoint with its record.

Batches are a pure function of (seed, iteration) and torch is re-seeded per iteration (dropout),
so a run resumed from a state file continues exactly as the uninterrupted run would have. State
files (`*.state.pt`) load with `torch.load(weights_only=True)`.
"""

from segcli.training.batches import DeviceBatches, LoaderBatches
from segcli.training.batchnorm import recalibrate_batch_norm
from segcli.training.config import (AUGMENT_PLACES, LOSSES, OPTIMIZERS, BatchTooSmallError, TrainConfig,
                                    TrainingInterrupted, TrainResult)
from segcli.training.loop import FitOutcome, FitSettings, fit
from segcli.training.losses import OHEM_MIN_KEPT, OHEM_THRESHOLD, segmentation_loss
from segcli.training.run import PreparedRun, finish, prepare, train, training_plan
from segcli.training.schedule import PolySchedule, batch_indices, batch_plan, poly_factor
from segcli.training.starting import build_record, source_model

__all__ = [
    "AUGMENT_PLACES", "LOSSES", "OHEM_MIN_KEPT", "OHEM_THRESHOLD", "OPTIMIZERS", "BatchTooSmallError",
    "DeviceBatches", "FitOutcome", "FitSettings", "LoaderBatches", "PolySchedule", "PreparedRun", "TrainConfig",
    "TrainResult", "TrainingInterrupted", "batch_indices", "batch_plan", "build_record", "finish", "fit",
    "poly_factor", "prepare", "recalibrate_batch_norm", "segmentation_loss", "source_model", "train",
    "training_plan",
]
