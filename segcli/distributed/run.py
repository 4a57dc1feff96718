"""The driver of `predict --engine ray`: start or join Ray, stream the planned images through the actors, count.

The output plan is the local run's (`FolderRun`: names, collisions, `--skip-existing`), checked
before Ray starts; the images to segment become rows of `ray.data.from_items`, `map_batches`
runs `SegmentActor` on an actor pool, and the driver reads one status row per image as they
arrive, feeding one progress display and the same `RunSummary` the local engine returns.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from segcli.distributed.actor import FAILED, SegmentActor, WriteSettings, planned_row
from segcli.distributed.progress import RunProgress
from segcli.distributed.settings import ClusterOptions, EngineSettings, WorkerRange, import_ray
from segcli.errors import SegcliError, with_hint
from segcli.outputs.folder import OutputFolder
from segcli.output_names import SET_MARK
from segcli.outputs.kinds import KINDS
from segcli.pipeline.interrupts import StopRequests
from segcli.pipeline.run import FolderRun, RunSummary
from segcli.pipeline.scheduler import available_cores
from segcli.text import printable

if TYPE_CHECKING:
    from rich.console import Console

MAX_ROWS_PER_BLOCK = 1024


class DistributedRunError(SegcliError):
    """Ray could not be started or reached, or its workers failed in a way no single image explains."""


def run_on_ray(run: FolderRun, engine: EngineSettings, cluster: ClusterOptions, console: "Console | None" = None,
               max_pixels: int | None = None) -> RunSummary:
    """Segment the planned images of `run` on Ray actors; the summary a local `FolderRun.execute` would give.

    `console`: where progress goes (default: stderr).
    """
    ray = import_ray()
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    started, wall_started = time.perf_counter(), time.time()
    summary = RunSummary()
    work = run.work
    total = len(work.todo) + len(work.skipped) + len(work.failed) + len(run.problems)
    with RunProgress(console, total) as progress:
        _count_planned_outcomes(run, summary, progress)
        if work.todo:
            _warn_synthetic(engine)
            settings = WriteSettings(max_pixels=max_pixels, alpha=run.options.alpha,
                                     save_probabilities=run.options.save_probabilities, classes=run.options.classes,
                                     settings=run.options.settings, run_started=wall_started)
            with OutputFolder(run.plan.out_dir) as folder, ray_session(ray, cluster) as workers:
                summary.removed_temporaries = folder.remove_stale_temporaries(planned_names(run))
                console.print(f"[bold]{engine.checkpoint.record.model}[/] "
                              f"{printable(engine.checkpoint.describe())} on Ray: {workers} worker{'' if workers.maximum == 1 else 's'}"
                              f"{'' if cluster.gpus_per_worker <= 0 else f', {cluster.gpus_per_worker:g} GPU each'}",
                              highlight=False)
                dataset = segmentation_dataset(ray, run, engine, settings, cluster, workers)
                _collect(ray, dataset, summary, progress)
            if summary.interrupted:
                _count_sets_landed_unreported(run, summary, since=wall_started)
    order = run.position.get
    summary.written.sort(key=lambda path: order(path, -1))
    summary.failed.sort(key=lambda item: order(item[0], -1))
    summary.skipped.sort(key=lambda path: order(path, -1))
    summary.seconds = time.perf_counter() - started
    return summary


def _warn_synthetic(engine: EngineSettings) -> None:
    """The warning the local engine gives when it loads a checkpoint of synthetic scenes (printed as `Warning:`)."""
    import warnings

    from segcli.checkpoints.resolve import synthetic_scenes_warning

    warning = synthetic_scenes_warning(engine.checkpoint.record)
    if warning:  # a SyntheticScenesWarning: the CLI adds its hint
        warnings.warn(warning, stacklevel=2)


def _count_planned_outcomes(run: FolderRun, summary: RunSummary, progress: RunProgress) -> None:
    """What the plan decided before any work: unusable inputs and outputs fail, complete sets are skipped."""
    for path, message in [*run.problems, *((source.path, with_hint(refusal)) for source, refusal in run.work.failed)]:
        summary.failed.append((path, message))
        progress.failed(message)
    for source in run.work.skipped:
        summary.skipped.append(source.path)
        progress.done(segmented=False)


def _count_sets_landed_unreported(run: FolderRun, summary: RunSummary, since: float) -> None:
    """After a stop: sets the actors finished whose rows had not reached the driver yet count as written.

    A set is complete once its JSON summary (renamed last) is in place; one renamed since the run
    started is this run's.
    """
    reported = set(summary.written) | {path for path, _ in summary.failed}
    for item in run.work.todo:
        if item.source.path in reported:
            continue
        try:
            landed = os.stat(item.paths[SET_MARK]).st_mtime >= since
        except OSError:
            continue
        if landed:
            summary.written.append(item.source.path)


def planned_names(run: FolderRun) -> dict[Path, set[str]]:
    """Every file name any kind would give the run's images, per folder (for the stale-temporary clean-up)."""
    names: dict[Path, set[str]] = {}
    for source in [item.source for item in run.work.todo] + run.work.skipped:
        for path in run.plan.paths_for(source.relative, KINDS).values():
            names.setdefault(path.parent, set()).add(path.name)
    return names


def segmentation_dataset(ray: Any, run: FolderRun, engine: EngineSettings, settings: WriteSettings,
                         cluster: ClusterOptions, workers: WorkerRange) -> Any:
    """The lazy Ray Data pipeline: planned rows -> SegmentActor on a pool of `workers` actors -> status rows."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False       # one display, the driver's
    context.print_on_execution_start = False
    context.raise_original_map_exception = True
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    rows = [planned_row(item) for item in run.work.todo]
    compute = ray.data.ActorPoolStrategy(min_size=workers.minimum, max_size=workers.maximum)
    batch = cluster.images_per_call()
    # blocks small enough that every actor gets several (balance, steady progress), at most 1024 rows each
    # (10 million rows would otherwise be 10 million blocks)
    per_block = max(batch, min(MAX_ROWS_PER_BLOCK, -(-len(rows) // (4 * workers.maximum))))
    return ray.data.from_items(rows, override_num_blocks=-(-len(rows) // per_block)).map_batches(
        SegmentActor, fn_constructor_args=(engine, settings), batch_size=batch, compute=compute,
        num_gpus=cluster.gpus_per_worker or None, batch_format="numpy")


def _collect(ray: Any, dataset: Any, summary: RunSummary, progress: RunProgress) -> None:
    """Read the status rows as actors finish them; the first Ctrl-C/SIGTERM stops the run after the rows in hand."""

    def on_stop(number: int) -> None:
        progress.say("stopping: the sets the workers finished are complete; a rerun with --skip-existing resumes")

    rows = dataset.iter_rows()
    seen: set[str] = set()  # a block Ray retries can hand back rows that already arrived
    progress.restart_clock()  # throughput from here: Ray's start-up is not the workers' speed
    with StopRequests(on_stop) as stop:
        try:
            for row in rows:
                if str(row["path"]) not in seen:
                    seen.add(str(row["path"]))
                    _record(row, summary, progress)
                if stop.requested:
                    break
        except KeyboardInterrupt:
            stop.request()
        except ray.exceptions.RayError as exc:
            raise DistributedRunError(f"the Ray run failed: {_last_line(exc)}") from None
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        summary.interrupted = stop.requested
        summary.signal = stop.signal


def _record(row: dict[str, Any], summary: RunSummary, progress: RunProgress) -> None:
    import json

    path = Path(str(row["path"]))
    if str(row["status"]) == FAILED:
        summary.failed.append((path, str(row["message"])))
        progress.failed(str(row["message"]))
        return
    summary.written.append(path)
    for stage, milliseconds in json.loads(str(row["timings"])).items():
        summary.stage_ms[stage] = summary.stage_ms.get(stage, 0.0) + milliseconds
    progress.done()


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@contextmanager
def ray_session(ray: Any, cluster: ClusterOptions) -> Iterator[WorkerRange]:
    """Ray as the run needs it: an instance already started here is used (and left running); else a local one is
    started (no address) or a cluster joined, and shut down at the end. Yields the actor pool's size."""
    if ray.is_initialized():
        yield cluster.workers or _default_workers(ray, cluster)
        return
    options = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    # Ray's C++ side logs to stderr below this level; the one line it prints on reading the variable is caught
    # with the rest of what ray.init writes there (quiet_stderr), so neither reaches the terminal
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    workers = cluster.workers
    try:
        with quiet_stderr():
            if cluster.address is None:
                workers = workers or WorkerRange(available_cores(), available_cores())
                ray.init(address="local", num_cpus=max(available_cores(), workers.maximum), **options)  # a new one
            else:
                ray.init(address=cluster.address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {cluster.address}" if cluster.address else "a local Ray instance"
        raise DistributedRunError(f"cannot start or reach {where}: {_last_line(exc)}") from None
    try:
        yield workers or _default_workers(ray, cluster)
    finally:
        ray.shutdown()


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """While Ray starts: what its C++ code writes to file descriptor 2 goes to a temporary file instead of the
    terminal (a transient progress bar redrawn then is lost too, and redrawn after). A no-op when stderr is
    not descriptor 2 (a captured stderr: tests, notebooks)."""
    import sys
    import tempfile

    try:
        on_descriptor_2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a captured or replaced stderr (tests, notebooks)
        on_descriptor_2 = False
    if not on_descriptor_2:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _default_workers(ray: Any, cluster: ClusterOptions) -> WorkerRange:
    """From 1 up to one actor per CPU of the Ray instance (per GPU share with --gpus-per-worker)."""
    resources = ray.cluster_resources()
    if cluster.gpus_per_worker > 0:
        most = int(resources.get("GPU", 0) / cluster.gpus_per_worker)
        if most < 1:
            raise DistributedRunError(f"the Ray instance has {resources.get('GPU', 0):g} GPUs: "
                                      f"{cluster.gpus_per_worker:g} GPUs per worker leave no room for a worker",
                                      hint="lower --gpus-per-worker")
        return WorkerRange(1, most)
    return WorkerRange(1, max(1, int(resources.get("CPU", 1))))
