"""The folder schedule: decode ahead, predict batches of same-size images, write behind.

One class runs every schedule. With `Schedule(batch_size=1, io_workers=0)` its executors run each
task when it is submitted, so images go one at a time through its thread; with I/O workers,
threads decode ahead and write behind (PIL and zlib release the GIL) while its thread runs the
model. `Schedule.lanes` > 1 runs that many Schedulers side by side over one queue of images, each
with a share of torch's threads: on a CPU one image per core beats every core on one image, and
one lane's decoding and writing fills the time another lane's model leaves. Every schedule holds
a bounded number of images in memory and writes the same files.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from segcli.errors import ModelOutputError, SegcliError, with_hint

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine
    from segcli.model_output import Prediction
    from segcli.imageio import LoadedImage
    from segcli.outputs.plan import PlannedImage
    from segcli.pipeline.interrupts import StopRequests


MAX_IO_WORKERS = 8  # decode threads (and as many write threads) beside a GPU


@dataclass(frozen=True)
class Schedule:
    """Images per forward pass, decode/write threads per lane, and lanes (images in flight side by side)."""

    batch_size: int = 1
    io_workers: int = 0
    lanes: int = 1
    torch_threads: int | None = None  # torch's intra-op threads while the run lasts (None: as they are)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.io_workers < 0 or self.lanes < 1:
            raise SegcliError(f"batch size and lanes must be >= 1 and I/O workers >= 0, got {self.batch_size}, "
                              f"{self.lanes} and {self.io_workers}")

    @classmethod
    def auto(cls, device_type: str, cores: int | None = None) -> "Schedule":
        """The schedule that measured fastest for a device (benchmarks/folder_speed.md).

        On a CPU, decode/write threads beside torch's own only take cores from it, and batches of
        several images are slower per image than one at a time; two lanes of one image each, with
        half of the cores' torch threads, keep both cores busy through the parts torch does not
        parallelise (small layers, decoding, encoding). Accelerators batch, and overlap decoding
        and writing with the model: one core stays with the thread that runs the model, the others
        decode and write (PIL's decoder and zlib release the GIL), at most MAX_IO_WORKERS of each.
        """
        cores = cores or available_cores()
        if device_type == "cpu":
            lanes = 2 if cores >= 2 else 1
            return cls(batch_size=1, io_workers=0, lanes=lanes, torch_threads=max(1, cores // lanes))
        return cls(batch_size=4, io_workers=max(2, min(MAX_IO_WORKERS, (cores - 1) // 2)))

    def with_choices(self, batch_size: int | None = None, io_workers: int | None = None) -> "Schedule":
        """This schedule with a user's --batch-size/--io-workers (None: keep); either one means a single lane."""
        if batch_size is None and io_workers is None:
            return self
        return Schedule(batch_size=batch_size or self.batch_size,
                        io_workers=self.io_workers if io_workers is None else io_workers)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return os.cpu_count() or 1


class InlineExecutor(Executor):
    """Runs each task as it is submitted: the one-at-a-time schedule behind the Executor interface."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # KeyboardInterrupt and SystemExit go straight up, as they would inline
            future.set_exception(exc)
        return future


Load = Callable[["PlannedImage"], "LoadedImage"]
Write = Callable[["PlannedImage", "LoadedImage", "Prediction"], None]
Report = Callable[["PlannedImage", str], None]


class Scheduler:
    """Runs planned images through `load` -> `engine.predict_batch` -> `write` on a `Schedule`.

    `report(item, status)` is told "ok" or "failed: <why>" for each image, in input order; a
    failure of one image never stops the others. Between images the scheduler checks `stop`:
    once a stop is requested, no new image starts, and writes under way finish.
    """

    def __init__(self, engine: "SegmentationEngine", load: Load, write: Write, report: Report,
                 schedule: Schedule, stop: "StopRequests", predict_options: dict[str, Any]) -> None:
        self.engine, self.load, self.write, self.report = engine, load, write, report
        self.schedule, self.stop, self.predict_options = schedule, stop, predict_options
        self.ahead = schedule.batch_size + 2 * schedule.io_workers  # decoded images waiting for the model
        self.behind = 2 * schedule.io_workers                      # predictions waiting for their writes
        self.loads: deque[tuple[PlannedImage, Future]] = deque()
        self.writes: deque[tuple[PlannedImage, Future]] = deque()
        self.batch: list[tuple[PlannedImage, LoadedImage]] = []
        self.readers: Executor = InlineExecutor()
        self.writers: Executor = InlineExecutor()

    def run(self, todo: Iterable["PlannedImage"]) -> None:
        """Every image of `todo`, until done or stopped; Ctrl-C drops queued work, running writes finish."""
        workers = self.schedule.io_workers
        if workers:
            self.readers = ThreadPoolExecutor(workers, thread_name_prefix="segcli-read")
            self.writers = ThreadPoolExecutor(workers, thread_name_prefix="segcli-write")
        upcoming = iter(todo)
        try:
            self._refill(upcoming)
            while self.loads or self.batch:
                if self.loads:
                    self._take_loaded()
                    self._refill(upcoming)
                if self.batch and (len(self.batch) >= self.schedule.batch_size or not self.loads):
                    self._run_batch()
                self._collect_writes(keep=self.behind)
            self._collect_writes(keep=0)
        except KeyboardInterrupt:
            for _, future in [*self.loads, *self.writes]:
                future.cancel()
            raise
        finally:
            self.readers.shutdown(wait=True)  # writes already running land (each set is atomic anyway)
            self.writers.shutdown(wait=True)

    def _refill(self, upcoming) -> None:
        while len(self.loads) < max(1, self.ahead) and not self.stop.requested:
            item = next(upcoming, None)
            if item is None:
                return
            self.loads.append((item, self.readers.submit(self.load, item)))

    def _take_loaded(self) -> None:
        item, future = self.loads.popleft()
        try:
            loaded = future.result()
        except SegcliError as exc:
            self.report(item, f"failed: {with_hint(exc)}")
            return
        if self.batch and self.batch[0][1].rgb.shape != loaded.rgb.shape:
            self._run_batch()
        self.batch.append((item, loaded))

    def _run_batch(self) -> None:
        for item, loaded, prediction in self._predict_isolating_failures():
            self.writes.append((item, self.writers.submit(self.write, item, loaded, prediction)))
            self._collect_writes(keep=self.behind)
        self.batch.clear()

    def _predict_isolating_failures(self) -> list[tuple["PlannedImage", "LoadedImage", "Prediction"]]:
        """(item, loaded, prediction) per image; a batch that fails is retried image by image."""
        if self.stop.requested:
            return []  # decoded, but not started: the run stops here
        images = [loaded.rgb for _, loaded in self.batch]
        try:
            predictions = self.engine.predict_batch(images, **self.predict_options)
            return [(item, loaded, prediction) for (item, loaded), prediction in zip(self.batch, predictions)]
        except ModelOutputError:
            raise  # the model, not this image: no image would fare better (one Error line, the run stops)
        except SegcliError as exc:
            if len(self.batch) == 1:
                self.report(self.batch[0][0], f"failed: {with_hint(exc)}")
                return []
        results = []
        for item, loaded in self.batch:
            try:
                results.append((item, loaded, self.engine.predict_batch([loaded.rgb], **self.predict_options)[0]))
            except SegcliError as exc:
                self.report(item, f"failed: {with_hint(exc)}")
        return results

    def _collect_writes(self, keep: int) -> None:
        while self.writes and (len(self.writes) > keep or self.writes[0][1].done()):
            item, future = self.writes.popleft()
            try:
                future.result()
            except SegcliError as exc:
                self.report(item, f"failed: {with_hint(exc)}")
                continue
            self.report(item, "ok")


class SharedQueue:
    """An iterator several lanes take items from, each item once."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items: Iterator[Any] = iter(items)
        self._lock = threading.Lock()

    def __iter__(self) -> "SharedQueue":
        return self

    def __next__(self) -> Any:
        with self._lock:
            return next(self._items)


def run_lanes(lanes: list[Scheduler], todo: list["PlannedImage"]) -> None:
    """Run the lanes side by side over one queue; the first lane runs in this thread (which gets the signals).

    A second Ctrl-C (KeyboardInterrupt here) lets the other lanes finish the image they hold,
    then goes up; an error in a lane goes up once every lane has stopped.
    """
    queue = SharedQueue(todo)
    errors: list[BaseException] = []

    def lane(scheduler: Scheduler) -> None:
        try:
            scheduler.run(queue)
        except BaseException as exc:  # handed to the caller's thread below
            scheduler.stop.request()
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(scheduler,), name=f"segcli-lane-{index}", daemon=True)
               for index, scheduler in enumerate(lanes[1:], start=1)]
    for thread in threads:
        thread.start()
    try:
        lanes[0].run(queue)
    except BaseException:
        lanes[0].stop.request()  # the other lanes stop after the image they hold
        raise
    finally:
        for thread in threads:
            while thread.is_alive():
                try:
                    thread.join()
                except KeyboardInterrupt:
                    lanes[0].stop.request()  # keep waiting: the lane finishes (or rolls back) its set
    if errors:
        raise errors[0]
