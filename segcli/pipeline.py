"""Segment many files with one engine: decode, predict, write, and keep going past bad files.

Two schedules give the same files: `io_workers=0, batch_size=1` runs one image at a time in
this thread (the reference); otherwise worker threads decode ahead and encode behind (PIL
releases the GIL while it decodes and compresses) while this thread runs the model on batches
of same-size images. Both hold a bounded number of images in memory.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from segcli.errors import SegcliError

if TYPE_CHECKING:
    from segcli.crf import CRFParams
    from segcli.engine import SegmentationEngine
    from segcli.imageio import ImageSource


@dataclass(frozen=True)
class OutputOptions:
    """What `predict` writes for each image."""

    out_dir: Path
    alpha: float = 0.5            # overlay opacity of the mask colours
    save_probabilities: bool = False
    write_overlay: bool = True
    overwrite: bool = False       # replace existing outputs
    skip_existing: bool = False   # leave images whose outputs exist (resume a big run)


@dataclass
class RunSummary:
    """What happened to each input of a run."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return len(self.written)


def segment_files(
    engine: "SegmentationEngine",
    sources: Sequence["ImageSource"],
    options: OutputOptions,
    crf: "CRFParams | None" = None,
    max_pixels: int | None = None,
    on_progress: Callable[["ImageSource", str], None] | None = None,
    batch_size: int = 1,
    io_workers: int = 0,
) -> RunSummary:
    """Run the engine over files; a bad file is recorded and skipped, Ctrl-C stops between images.

    `io_workers` > 0 or `batch_size` > 1: decode/encode in background threads and batch
    same-size images through the model; the files written are the same.
    """
    from segcli.imageio import DEFAULT_MAX_PIXELS, load_image

    limit = max_pixels or DEFAULT_MAX_PIXELS
    if batch_size < 1 or io_workers < 0:
        raise SegcliError(f"batch size must be >= 1 and I/O workers >= 0, got {batch_size} and {io_workers}")
    if io_workers > 0 or batch_size > 1:
        return _segment_files_overlapped(engine, sources, options, crf, limit, on_progress, batch_size, io_workers)
    summary = RunSummary()
    started = time.perf_counter()
    summary_before: tuple[int, int] | None | bool  # False: not writing this image's set; else its stamp before
    for source in sources:
        status = "ok"
        summary_before = False
        try:
            if should_skip(source, options):
                summary.skipped.append(source.path)
                status = "skipped"
                continue
            loaded = load_image(source.path, max_pixels=limit)
            prediction = engine.predict(loaded.rgb, crf=crf, return_probabilities=options.save_probabilities)
            summary_before = _summary_stamp(source, options)
            write_outputs(engine, source, loaded, prediction, options, crf)
            summary.written.append(source.path)
            summary_before = False
        except SegcliError as exc:
            summary.failed.append((source.path, str(exc)))
            status = f"failed: {exc}"
        except KeyboardInterrupt:
            summary.interrupted = True
            status = "interrupted"
            # Ctrl-C right after the last file of the set landed, before the count: still a written set
            if summary_before is not False and source.path not in summary.written \
                    and _written_since(source, options, summary_before):
                summary.written.append(source.path)
                status = "ok"
            break
        finally:
            if on_progress is not None:
                on_progress(source, status)
    summary.seconds = time.perf_counter() - started
    return summary


def _segment_files_overlapped(engine, sources, options, crf, limit, on_progress, batch_size, io_workers) -> RunSummary:
    """Decode ahead and write behind in threads; batches of same-size images through the model.

    At most `batch_size + 2 * workers` decoded images wait for the model and `2 * workers`
    predictions wait for their writes. Ctrl-C cancels decodes not yet started, lets started
    writes finish (each output file is atomic anyway) and returns the summary.
    """
    from segcli.imageio import load_image

    workers = max(1, io_workers)
    summary = RunSummary()
    position = {source.path: index for index, source in enumerate(sources)}
    started = time.perf_counter()
    upcoming = iter(sources)
    loads: deque[tuple[ImageSource, Future]] = deque()
    writes: deque[tuple[ImageSource, Future]] = deque()
    batch: list[tuple[ImageSource, object]] = []
    # written by the writer threads themselves, so a Ctrl-C landing in this thread between a write
    # finishing and its bookkeeping cannot lose a complete set from the count
    completed: list[Path] = []
    write_failures: list[tuple[Path, str]] = []

    def write_and_record(source, loaded, prediction) -> None:
        try:
            write_outputs(engine, source, loaded, prediction, options, crf)
        except SegcliError as exc:
            write_failures.append((source.path, str(exc)))
            raise
        completed.append(source.path)

    def report(source, status: str) -> None:
        if on_progress is not None:
            on_progress(source, status)

    def fail(source, exc: SegcliError) -> None:
        summary.failed.append((source.path, str(exc)))
        report(source, f"failed: {exc}")

    def refill() -> None:
        while len(loads) < batch_size + 2 * workers:
            source = next(upcoming, None)
            if source is None:
                return
            if should_skip(source, options):
                summary.skipped.append(source.path)
                report(source, "skipped")
            else:
                loads.append((source, readers.submit(load_image, source.path, max_pixels=limit)))

    def collect_writes(keep_pending: int) -> None:
        while writes and (len(writes) > keep_pending or writes[0][1].done()):
            source, future = writes.popleft()
            try:
                future.result()
            except SegcliError as exc:
                report(source, f"failed: {exc}")  # counted by write_and_record
                continue
            report(source, "ok")

    def run_batch() -> None:
        for source, loaded, prediction in _predict_isolating_failures(engine, batch, crf, options, fail):
            writes.append((source, writers.submit(write_and_record, source, loaded, prediction)))
            collect_writes(keep_pending=2 * workers)
        batch.clear()

    with ThreadPoolExecutor(workers, thread_name_prefix="segcli-read") as readers, \
            ThreadPoolExecutor(workers, thread_name_prefix="segcli-write") as writers:
        try:
            refill()
            while loads or batch:
                if loads:
                    source, future = loads.popleft()
                    refill()
                    try:
                        loaded = future.result()
                    except SegcliError as exc:
                        fail(source, exc)
                        continue
                    if batch and batch[0][1].rgb.shape != loaded.rgb.shape:
                        run_batch()
                    batch.append((source, loaded))
                if len(batch) >= batch_size or (batch and not loads):
                    run_batch()
                collect_writes(keep_pending=2 * workers)
            collect_writes(keep_pending=0)
        except KeyboardInterrupt:
            summary.interrupted = True
            # queued decodes and writes are dropped; writes already running finish (leaving
            # executors waits for them): no temporary files, no incomplete set
            for _, future in list(loads) + list(writes):
                future.cancel()
    summary.written.extend(completed)
    summary.failed.extend(write_failures)
    # the same order as the sequential schedule, whatever order the threads finished in
    summary.written.sort(key=position.__getitem__)
    summary.skipped.sort(key=position.__getitem__)
    summary.failed.sort(key=lambda item: position[item[0]])
    summary.seconds = time.perf_counter() - started
    return summary


def _predict_isolating_failures(engine, batch, crf, options, fail):
    """(source, loaded, prediction) per image; a batch that fails is retried image by image."""
    images = [loaded.rgb for _, loaded in batch]
    try:
        predictions = engine.predict_batch(images, crf=crf, return_probabilities=options.save_probabilities)
        return [(source, loaded, prediction) for (source, loaded), prediction in zip(batch, predictions)]
    except SegcliError as exc:
        if len(batch) == 1:
            fail(batch[0][0], exc)
            return []
    results = []
    for source, loaded in batch:
        try:
            prediction = engine.predict(loaded.rgb, crf=crf, return_probabilities=options.save_probabilities)
        except SegcliError as exc:
            fail(source, exc)
            continue
        results.append((source, loaded, prediction))
    return results


def _summary_stamp(source: "ImageSource", options: OutputOptions) -> tuple[int, int] | None:
    """(inode, mtime) of the image's JSON summary, the last file of its set to land; None when absent."""
    from segcli.outputs import output_paths

    try:
        stat = output_paths(options.out_dir, source.relative)["summary"].stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _written_since(source: "ImageSource", options: OutputOptions, before: tuple[int, int] | None) -> bool:
    """The whole set is on disk and its summary was (atomically) replaced since `before`."""
    from segcli.outputs import output_paths

    now = _summary_stamp(source, options)
    return now is not None and now != before and _outputs_exist(output_paths(options.out_dir, source.relative), options)


def should_skip(source: "ImageSource", options: OutputOptions) -> bool:
    """--skip-existing and every output this run would write exists."""
    from segcli.outputs import output_paths

    return options.skip_existing and _outputs_exist(output_paths(options.out_dir, source.relative), options)


def write_outputs(engine, source, loaded, prediction, options: OutputOptions, crf) -> None:
    """Write one image's label PNG, overlay, probabilities and JSON summary (atomically)."""
    from segcli.outputs import write_prediction

    write_prediction(
        options.out_dir,
        source.relative,
        loaded.rgb,
        prediction.labels,
        engine.record.categories,
        engine.record.palette,
        _image_summary(engine, source, loaded, prediction, crf),
        alpha=options.alpha,
        probabilities=prediction.probabilities,
        # --skip-existing only gets here when a set is incomplete: complete it
        overwrite=options.overwrite or options.skip_existing,
        write_overlay=options.write_overlay,
    )


def _outputs_exist(paths: dict[str, Path], options: OutputOptions) -> bool:
    wanted = [path for key, path in paths.items() if _wanted(key, options)]
    return all(path.exists() for path in wanted)


def _wanted(key: str, options: OutputOptions) -> bool:
    if key == "overlay":
        return options.write_overlay
    if key == "probabilities":
        return options.save_probabilities
    return True


def _image_summary(engine, source, loaded, prediction, crf) -> dict:
    height, width = loaded.rgb.shape[:2]
    return {
        "image": str(source.path),
        "size": [width, height],
        "model": engine.record.model,
        "checkpoint": engine.record.name,
        "checkpoint_source": engine.source,
        "device": str(engine.plan.device),
        "precision": engine.plan.precision,
        "crf": None if crf is None else asdict(crf),
        "note": "; ".join(note for note in (loaded.note, engine.checkpoint_warning) if note) or None,
        "timings_ms": {k: round(v, 3) for k, v in prediction.timings_ms.items()},
        "categories": list(engine.record.categories),
    }
