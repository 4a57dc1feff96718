"""Ctrl-C and SIGTERM stop a run between images: the image being written is finished and counted.

The first SIGINT or SIGTERM only records the request; the scheduler stops before the next image
and lets writes already under way land, so the count always equals the complete sets on disk. A
second signal raises KeyboardInterrupt at once (the set being written is then rolled back).
Exit codes follow the shell's 128 + signal convention: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """`with StopRequests() as stop:` ... `if stop.requested: ...`; handlers restored on exit.

    Outside the main thread (where Python cannot install handlers) nothing is installed, and
    Ctrl-C arrives as KeyboardInterrupt as usual.
    """

    def __init__(self, on_first: Callable[[int], None] | None = None) -> None:
        self.signal: int | None = None
        self._on_first = on_first  # told the signal number when the first stop request arrives
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def request(self, number: int = signal.SIGINT) -> None:
        """Stop between images, as a signal would (a no-op when a stop was already asked for)."""
        if self.signal is None:
            self.signal = number

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signal = number
        if self._on_first is not None:
            self._on_first(number)


def exit_code(signal_number: int | None) -> int:
    """128 + the signal that stopped the run (130 for Ctrl-C, also when it came as KeyboardInterrupt)."""
    return 128 + (signal_number or signal.SIGINT)
