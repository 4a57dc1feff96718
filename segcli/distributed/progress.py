"""One progress display fed from the driver: a rich bar on a terminal, plain lines when piped."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.markup import escape

from segcli.text import printable

if TYPE_CHECKING:
    from rich.console import Console

PLAIN_EVERY_SECONDS = 10.0  # when piped, a line at least this often (and at every tenth of the run)


class RunProgress:
    """`with RunProgress(console, total) as progress:` ... `progress.done()` / `progress.failed(message)`."""

    def __init__(self, console: "Console", total: int) -> None:
        self.console, self.total = console, total
        self.finished = self.failures = self.segmented = 0
        self._started = time.perf_counter()
        self._plain = not console.is_terminal
        self._last_line = (0, self._started)  # (count, time) of the last plain line
        self._bar = None
        self._task = None

    def __enter__(self) -> "RunProgress":
        if not self._plain and not self.console.quiet and self.total >= 2:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[failed]} failed, {task.fields[rate]}"),
                                 TimeRemainingColumn(), console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("segmenting", total=self.total, failed=0, rate="-")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)

    def restart_clock(self) -> None:
        self._started = time.perf_counter()

    def rate(self) -> str:
        seconds = time.perf_counter() - self._started
        return f"{self.segmented / seconds:.2f} images/s" if seconds > 0 and self.segmented else "-"

    def done(self, segmented: bool = True) -> None:
        """One more image accounted for (segmented, or skipped when `segmented` is False)."""
        self.finished += 1
        self.segmented += int(segmented)
        self._advance()

    def failed(self, message: str) -> None:
        self.failures += 1
        self.finished += 1
        self.say(f"[red]failed[/]: {escape(printable(message))}")
        self._advance()

    def say(self, markup: str) -> None:
        target = self._bar.console if self._bar is not None else self.console
        target.print(markup, markup=True, highlight=False, soft_wrap=True)

    def _advance(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, failed=self.failures, rate=self.rate())
            return
        if not self._plain or self.console.quiet:
            return
        count, when = self._last_line
        now = time.perf_counter()
        if self.finished == self.total or self.finished - count >= max(1, self.total // 10) \
                or now - when >= PLAIN_EVERY_SECONDS:
            self._last_line = (self.finished, now)
            self.console.print(f"{self.finished}/{self.total} images, {self.failures} failed, {self.rate()}",
                               highlight=False, soft_wrap=True)
