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
