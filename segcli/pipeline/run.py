"""One `predict` run over many files: the output plan decided up front, then the images through a Scheduler."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from segcli.errors import with_hint
from segcli.inference_options import FROM_OPTIONS, CRFChoice
from segcli.outputs.folder import OutputFolder
from segcli.outputs.kinds import KINDS
from segcli.outputs.results import ImageResult, RunInfo
from segcli.outputs.plan import OutputOptions, OutputPlan, PlannedImage
from segcli.outputs.writer import write_image_outputs
from segcli.pipeline.interrupts import StopRequests
from segcli.pipeline.scheduler import Schedule, Scheduler, run_lanes

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine
    from segcli.model_output import Prediction
    from segcli.imageio import LoadedImage
    from segcli.inputs import ImageSource

Progress = Callable[["ImageSource", str], None]


@dataclass
class RunSummary:
    """What happened to each input of a run."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: bool = False
    signal: int | None = None            # the signal that stopped the run (SIGINT for a KeyboardInterrupt)
    seconds: float = 0.0
    removed_temporaries: list[Path] = field(default_factory=list)  # stale ones left by a killed run
    stage_ms: dict[str, float] = field(default_factory=dict)        # summed over the written images
    crf_images: int = 0                  # written images the dense CRF ran on
    crf_band_images: int = 0             # ... of which the fast CRF ran full-size band updates on

    @property
    def processed(self) -> int:
        return len(self.written)


class FolderRun:
    """`FolderRun(options, sources)` checks the outputs (OutputError up front); `execute(engine)` runs it."""

    def __init__(self, options: OutputOptions, sources: Sequence["ImageSource"],
                 problems: Sequence[tuple[Path, str]] = ()) -> None:
        self.options = options
        self.plan = OutputPlan(options)
        self.work = self.plan.prepare(list(sources))
        self.problems = list(problems)  # inputs that could not be used (unreadable folders, broken links)
        self.position = {source.path: index for index, source in enumerate(sources)}

    def execute(self, engine: "SegmentationEngine | None", crf: CRFChoice = FROM_OPTIONS,
                max_pixels: int | None = None, schedule: Schedule | None = None,
                on_progress: Progress | None = None, on_stop: Callable[[int], None] | None = None) -> RunSummary:
        """Segment every planned image; a bad file is recorded and skipped, Ctrl-C/SIGTERM stop between images.

        `engine` may be None when the plan has nothing to segment (every image skipped or failed);
        `crf` as `engine.predict_batch` takes it (left out: the engine's options);
        `on_stop(signal)` is told when the first Ctrl-C or SIGTERM arrives (the run then finishes
        the images in hand).
        """
        self._on_stop = on_stop
        started = time.perf_counter()
        self._summary = RunSummary()
        self._report = on_progress or (lambda source, status: None)
        self._report_planned_outcomes()
        if self.work.todo:
            if engine is None:
                raise ValueError("an engine is needed: the plan has images to segment")
            self._run_scheduler(engine, crf, max_pixels, schedule)
        return self._finish(time.perf_counter() - started)

    def _run_scheduler(self, engine: "SegmentationEngine", crf: CRFChoice, max_pixels: int | None,
                       schedule: Schedule | None) -> None:
        from segcli.imageio import DEFAULT_MAX_PIXELS

        self._max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        resolved = engine.crf_for(crf)
        self._run_info = RunInfo.from_engine(engine, None if resolved is None else resolved[0], self.options.alpha,
                                            classes=self.options.classes, settings=self.options.settings)
        self._decode_ms: dict[Path, float] = {}
        self._stage_lock = threading.Lock()  # lanes add their stage times from several threads
        schedule = schedule or Schedule.auto(engine.plan.device.type)
        predict_options = {"crf": crf, "return_probabilities": self.options.save_probabilities}
        with OutputFolder(self.plan.out_dir) as folder, StopRequests(self._on_stop) as stop, \
                _torch_threads(schedule.torch_threads):
            self._summary.removed_temporaries = folder.remove_stale_temporaries(self._planned_names())
            lanes = [Scheduler(engine, self._load, self._write, self._report_item, schedule, stop, predict_options)
                     for _ in range(schedule.lanes)]
            try:
                run_lanes(lanes, self.work.todo)
            except KeyboardInterrupt:
                self._summary.interrupted = True
            self._summary.interrupted |= stop.requested
            self._summary.signal = stop.signal

    def _report_planned_outcomes(self) -> None:
        from segcli.inputs import ImageSource

        for path, message in self.problems:
            self._summary.failed.append((path, message))
            self._report(ImageSource(path, Path(path.name)), f"failed: {message}")
        for source, refusal in self.work.failed:
            self._summary.failed.append((source.path, with_hint(refusal)))  # as the scheduler's failures read
            self._report(source, f"failed: {with_hint(refusal)}")
        for source in self.work.skipped:
            self._summary.skipped.append(source.path)
            self._report(source, "skipped")

    def _planned_names(self) -> dict[Path, set[str]]:
        """Every file name any kind would give the run's images, per folder (for the stale-temporary clean-up)."""
        names: dict[Path, set[str]] = {}
        for source in [item.source for item in self.work.todo] + self.work.skipped:
            for path in self.plan.paths_for(source.relative, KINDS).values():
                names.setdefault(path.parent, set()).add(path.name)
        return names

    def _load(self, item: PlannedImage) -> "LoadedImage":
        from segcli.imageio import load_image

        started = time.perf_counter()
        loaded = load_image(item.source.path, max_pixels=self._max_pixels)
        self._decode_ms[item.source.path] = (time.perf_counter() - started) * 1000.0
        return loaded

    def _write(self, item: PlannedImage, loaded: "LoadedImage", prediction: "Prediction") -> None:
        timings = {"decode": self._decode_ms.pop(item.source.path, 0.0), **prediction.timings_ms}
        result = ImageResult(path=item.source.path, rgb=loaded.rgb, labels=prediction.labels,
                             probabilities=prediction.probabilities, note=loaded.note, timings_ms=timings,
                             crf=prediction.crf, plan=prediction.plan)
        written = write_image_outputs(item.paths, result, self._run_info, replace=item.replace)
        # recorded by the writing thread itself, right after the set landed: a Ctrl-C arriving in the
        # scheduler's thread in between cannot lose a complete set from the count
        self._summary.written.append(item.source.path)
        with self._stage_lock:
            if prediction.crf:
                self._summary.crf_images += 1
                self._summary.crf_band_images += bool(prediction.crf.get("band_iterations"))
            for stage, milliseconds in {**timings, **written}.items():
                self._summary.stage_ms[stage] = self._summary.stage_ms.get(stage, 0.0) + milliseconds

    def _report_item(self, item: PlannedImage, status: str) -> None:
        if status.startswith("failed: "):
            self._summary.failed.append((item.source.path, status[len("failed: "):]))
        self._report(item.source, status)

    def _finish(self, seconds: float) -> RunSummary:
        summary = self._summary
        order = self.position.get
        summary.written.sort(key=lambda path: order(path, -1))  # input order, whatever order threads finished in
        summary.skipped.sort(key=lambda path: order(path, -1))
        summary.failed.sort(key=lambda item: order(item[0], -1))
        summary.seconds = seconds
        return summary


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `count` while the run lasts (None: left as they are)."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def segment_files(
    engine: "SegmentationEngine",
    sources: Sequence["ImageSource"],
    options: OutputOptions,
    crf: CRFChoice = FROM_OPTIONS,
    max_pixels: int | None = None,
    on_progress: Progress | None = None,
    batch_size: int | None = None,
    io_workers: int | None = None,
) -> RunSummary:
    """Run the engine over files and write each image's outputs (see FolderRun); None: the automatic schedule."""
    schedule = Schedule.auto(engine.plan.device.type).with_choices(batch_size, io_workers)
    return FolderRun(options, sources).execute(engine, crf, max_pixels, schedule, on_progress)
