"""The model-agnostic training loop: `fit(model, batches, optimizer, schedule, plan, loss_fn, settings)`.

`fit` knows nothing of datasets, checkpoints or zoo models: it moves each batch to the plan's
device, runs forward (under the plan's autocast) and backward, sets the learning rate from the
schedule, and calls back to save state and report progress. Ctrl-C and SIGTERM stop it at the
end of the running iteration (state saved, `FitOutcome.stopped`); a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from segcli.device import ExecutionPlan
from segcli.errors import SegcliError
from segcli.training.schedule import PolySchedule

PACING_WARMUP = 5           # iterations left out of the speed measurement (cuDNN autotuning, allocator growth)
PACING_AIM = 0.97          # share of the time left that the fitted iterations are planned to fill
PACING_FIRST = 20           # timed iterations behind the first estimate
PACING_EVERY_SECONDS = 5.0  # then how often a deadline re-fits the iteration count to the measured speed


@dataclass(frozen=True)
class FitSettings:
    total: int                          # iterations; with a deadline, the most there may be
    start: int = 0                      # first iteration (a resumed run)
    seed: int = 0                       # torch is re-seeded with (seed, iteration): dropout repeats on resume
    log_every: int = 25                 # losses reach the host (and are checked) this often
    save_every: int = 200
    deadline: float | None = None       # time.monotonic() by which the last iteration must have ended


@dataclass
class FitOutcome:
    iteration: int                      # iterations done in all, earlier processes included
    total: int                          # the schedule's total (fixed from the measured speed under a deadline)
    losses: list[float] = field(default_factory=list)  # this process's, one per iteration
    seconds: float = 0.0
    stopped: bool = False               # Ctrl-C or SIGTERM ended it at `iteration` (state saved)


SaveCallback = Callable[[int, int], None]                      # (iterations done, total)
ProgressCallback = Callable[[int, int, float, "float | None"], None]  # (done, total, lr, mean loss at log points)


def fit(model: nn.Module, batches, optimizer: torch.optim.Optimizer, schedule: PolySchedule, plan: ExecutionPlan,
        loss_fn: Callable[[Any, Any], torch.Tensor], settings: FitSettings,
        on_save: SaveCallback | None = None, on_progress: ProgressCallback | None = None) -> FitOutcome:
    """Train `model` on `batches.batches(start)` from `settings.start` to the schedule's total."""
    outcome = FitOutcome(iteration=settings.start, total=settings.total)
    schedule.total = settings.total
    pacer = _Pacer(settings.deadline, settings.total, settings.start, plan) if settings.deadline else None
    losses = _LossLog(settings.start)
    scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.precision == "fp16")
    started = time.perf_counter()
    model.train()
    with _stop_requests() as stop, plan.numerics():
        if pacer is not None:
            schedule.total = outcome.total = pacer.refit(settings.start, outcome.total)
        source: Iterator = batches.batches(settings.start)
        done = saved = settings.start
        while done < outcome.total and not stop.requested:
            inputs, targets = _to_device(next(source), plan)
            torch.manual_seed(settings.seed * 7919 + done)  # dropout draws, reproducible on resume
            lr = schedule.apply(done)
            losses.add(_step(model, inputs, targets, optimizer, scaler, plan, loss_fn))
            done += 1
            if pacer is not None:
                schedule.total = outcome.total = pacer.refit(done, outcome.total)
            # the first iteration too: a progress display has a real loss to show from the start
            log_point = done % settings.log_every == 0 or done == outcome.total
            first = done == settings.start + 1
            mean = losses.flush(end_window=log_point) if log_point or first else None
            if on_progress is not None:
                on_progress(done, outcome.total, lr, mean)
            if on_save is not None and (done % settings.save_every == 0 or done == outcome.total):
                losses.flush()
                on_save(done, outcome.total)
                saved = done
        losses.flush()
        if stop.requested and saved != done and on_save is not None:
            on_save(done, outcome.total)
    outcome.iteration, outcome.stopped = done, stop.requested
    outcome.losses, outcome.seconds = losses.values, time.perf_counter() - started
    return outcome


def _step(model: nn.Module, inputs, targets, optimizer: torch.optim.Optimizer, scaler, plan: ExecutionPlan,
          loss_fn: Callable[[Any, Any], torch.Tensor]) -> torch.Tensor:
    with plan.autocast():
        outputs = model(inputs)
    loss = loss_fn(outputs, targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def _to_device(value, plan: ExecutionPlan):
    """Tensors (also inside tuples, lists and dicts) onto the plan's device; images channels_last."""
    if isinstance(value, torch.Tensor):
        value = value.to(plan.device, non_blocking=True)
        if plan.channels_last and value.dim() == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=torch.channels_last)
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(item, plan) for item in value)
    if isinstance(value, dict):
        return {key: _to_device(item, plan) for key, item in value.items()}
    return value


class _LossLog:
    """Losses stay on the device until a log point: reading one each iteration would stall a GPU."""

    def __init__(self, start: int) -> None:
        self.values: list[float] = []
        self.pending: list[torch.Tensor] = []
        self.window: list[float] = []  # host-side losses since the last log point
        self.start = start

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss)

    def flush(self, end_window: bool = True) -> float | None:
        """Move the pending losses to the host; the mean since the last window ended (None when there was
        none). `end_window=False` reads without ending the window, so the next log point's mean keeps
        every iteration since the previous one."""
        if self.pending:
            fresh = torch.stack([loss.float() for loss in self.pending]).tolist()
            self.pending.clear()
            for offset, value in enumerate(fresh):
                if not math.isfinite(value):
                    iteration = self.start + len(self.values) + offset
                    raise SegcliError(f"the loss became {value} at iteration {iteration}: lower the learning rate",
                                      hint="lower --lr")
            self.values.extend(fresh)
            self.window.extend(fresh)
        if not self.window:
            return None
        mean = sum(self.window) / len(self.window)
        if end_window:
            self.window.clear()
        return mean


class _Pacer:
    """Fits the iteration count to a deadline: measured speed times the time left, re-measured as it goes."""

    def __init__(self, deadline: float, cap: int, start: int, plan: ExecutionPlan) -> None:
        self.deadline, self.cap, self.start, self.plan = deadline, cap, start, plan
        # re-measure often enough for short budgets too (a tenth of the time left at the start)
        self.every = min(PACING_EVERY_SECONDS, max(0.05, 0.1 * (deadline - time.monotonic())))
        self.mark: tuple[int, float] | None = None  # (iterations done, time) where the current window began
        self.calibrated = False

    def refit(self, done: int, total: int) -> int:
        """The total iteration count, re-decided when a measuring window closes (else `total` unchanged)."""
        now = time.monotonic()
        if now >= self.deadline:
            return done  # out of time: this iteration is the last
        if done < self.start + PACING_WARMUP:
            return total
        if self.mark is None or done == self.mark[0]:
            self.plan.synchronize()
            self.mark = (done, time.monotonic())
            return total
        if now - self.mark[1] < self.every and (self.calibrated or done - self.mark[0] < PACING_FIRST):
            return total
        self.calibrated = True
        self.plan.synchronize()
        now = time.monotonic()
        seconds_each = (now - self.mark[1]) / (done - self.mark[0])
        self.mark = (done, now)
        # aim a little early: a slower stretch near the end would otherwise cut the poly tail off
        return max(done, min(self.cap, done + int(PACING_AIM * (self.deadline - now) / seconds_each)))


class _StopFlag:
    requested = False


@contextlib.contextmanager
def _stop_requests() -> Iterator[_StopFlag]:
    """SIGINT/SIGTERM set a flag checked between iterations; a second Ctrl-C interrupts at once."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def request(signum: int, frame) -> None:
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested = True

    previous = {number: signal.signal(number, request) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
