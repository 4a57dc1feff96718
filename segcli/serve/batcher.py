"""Requests that arrive together run as one batch, on one inference thread.

Handlers `submit` decoded images; one dispatcher task takes the first waiting image, gathers more
of the same size for at most `wait_s` (up to `max_batch`), and hands the batch to a single worker
thread (`engine.predict_batch`), awaiting it before the next batch: the model never runs two
batches at once. Images of another size wait, in arrival order, for a batch of their own. At most
`max_pending` images wait or run; one more is refused (`Busy`: HTTP 503) instead of queueing
without bound. A request that gave up (timeout, client gone) is dropped if its batch has not
started. `close` finishes every image already accepted, then stops the thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class Busy(Exception):
    """Too many images are waiting; the client should retry later."""


@dataclass
class Job:
    """One image waiting for the model."""

    rgb: np.ndarray
    probabilities: bool
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)
    started: float = 0.0  # when its batch went to the model
    finished: float = 0.0  # when its prediction was handed back
    batch_size: int = 0


class Batcher:
    """The queue in front of the model and the one thread that runs it."""

    def __init__(self, predict_batch: Callable, max_batch: int = 4, wait_s: float = 0.005, max_pending: int = 32,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self._predict_batch = predict_batch  # (list of HxWx3 uint8 arrays, return_probabilities) -> predictions
        self.max_batch, self.wait_s, self.max_pending = max_batch, wait_s, max_pending
        self._on_batch = on_batch
        self._waiting: deque[Job] = deque()
        self._arrived: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segcli-model")
        self._task: asyncio.Task | None = None
        self._closing = False
        self.pending = 0  # accepted and not yet answered (waiting or in the running batch)

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._dispatch())

    async def submit(self, rgb: np.ndarray, probabilities: bool = False) -> Job:
        """Queue an image (Busy if too many wait); await `job.future` for its Prediction."""
        if self._closing:
            raise Busy("the server is shutting down")
        if self.pending >= self.max_pending:
            raise Busy(f"{self.pending} images are already waiting for the model")
        job = Job(rgb=rgb, probabilities=probabilities, future=asyncio.get_running_loop().create_future())
        self.pending += 1
        job.future.add_done_callback(self._answered)
        self._waiting.append(job)
        self._arrived.set()
        return job

    def _answered(self, future: asyncio.Future) -> None:
        self.pending -= 1

    async def close(self) -> None:
        """Finish the images already accepted, then stop the dispatcher and the worker thread."""
        self._closing = True
        if self._task is not None:
            self._arrived.set()
            await self._task
        self._executor.shutdown(wait=True)

    async def _dispatch(self) -> None:
        while True:
            self._drop_abandoned()
            if not self._waiting:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch = await self._gather()
            if batch:
                await self._run(batch)

    def _drop_abandoned(self) -> None:
        self._waiting = deque(job for job in self._waiting if not job.future.done())

    async def _gather(self) -> list[Job]:
        """The first waiting image and, for at most wait_s, more of its size (up to max_batch)."""
        first = self._waiting.popleft()
        batch, shape = [first], first.rgb.shape
        deadline = time.perf_counter() + self.wait_s
        while len(batch) < self.max_batch:
            same = [job for job in self._waiting if job.rgb.shape == shape and not job.future.done()]
            for job in same[:self.max_batch - len(batch)]:
                self._waiting.remove(job)
                batch.append(job)
            left = deadline - time.perf_counter()
            if len(batch) >= self.max_batch or left <= 0 or self._closing:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                pass  # waited long enough: run what we have
        return [job for job in batch if not job.future.done()]

    async def _run(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        for job in batch:
            job.started, job.batch_size = started, len(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch))
        loop = asyncio.get_running_loop()
        try:
            predictions = await loop.run_in_executor(
                self._executor, self._predict_batch, [job.rgb for job in batch], any(j.probabilities for j in batch))
        except Exception as exc:  # handed to each request, which answers 500 with the message
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, prediction in zip(batch, predictions):
            if not job.future.done():
                job.future.set_result(prediction)
