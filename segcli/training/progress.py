"""Training progress: a rich bar on a terminal, a log line every `log_every` iterations otherwise."""

from __future__ import annotations

import time


class TrainingProgress:
    """A context manager whose value is `fit`'s progress callback (done, total, lr, mean loss or None)."""

    def __init__(self, console, total: int, start: int) -> None:
        self.console, self.total, self.start = console, total, start
        self.started = time.perf_counter()
        self.bar = None
        self.task = None

    def __enter__(self) -> "TrainingProgress":
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]} lr {task.fields[lr]:.2e}"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=self.console)
            self.bar.start()
            self.task = self.bar.add_task("train", total=self.total, completed=self.start, loss="-", lr=0.0)
        return self

    def __call__(self, done: int, total: int, lr: float, loss: float | None) -> None:
        if self.bar is not None:
            fields = {"lr": lr} if loss is None else {"lr": lr, "loss": f"{loss:.4f}"}
            self.bar.update(self.task, completed=done, total=total, **fields)
        elif loss is not None:
            elapsed = time.perf_counter() - self.started
            rate = elapsed / max(1, done - self.start)
            self.console.print(f"iter {done}/{total} loss {loss:.4f} lr {lr:.2e} {rate:.3f} s/it "
                               f"elapsed {elapsed:.0f} s ETA {rate * (total - done):.0f} s", highlight=False)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
