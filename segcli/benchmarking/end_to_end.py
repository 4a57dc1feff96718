"""The end-to-end row: exactly what `segcli predict FOLDER` does per image, stage by stage.

JPEG files on disk go through the folder pipeline itself (`FolderRun`, on the schedule `predict`
picks for the device, batches of `--batch` images): decode, preprocess, forward, upsample, CRF
(when on), then every default output written (label PNG, overlay PNG, JSON summary: encoded to
temporary files, renamed into place; a new set, as here, is not fsynced). Each stage's time is summed over the images and divided by the
images and by the lanes working side by side (two on a CPU: each lane's wall time is the sum of
its stages), so it is that stage's share of the wall time per image; `other` is the rest (the
scheduler, Python), so the stages add up to the total. Where I/O threads overlap the model (the
GPU schedule) the shares overlap too and `other` goes negative by that overlap.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segcli.benchmarking.measure import LatencyStats, PeakMemory
from segcli.inference_options import FROM_OPTIONS, CRFChoice

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine

STAGES = ("decode", "preprocess", "forward", "upsample", "crf", "label", "overlay", "json", "rename", "other")


@dataclass(frozen=True)
class EndToEndResult:
    """Per-batch latency of the folder pipeline, and per-image milliseconds of each stage (summing to the mean)."""

    stats: LatencyStats        # per batch of `batch` images
    stage_ms: dict[str, float]  # per image; the values add up to stats.mean_ms / batch
    peak_memory_mb: float | None
    lanes: int = 1              # images in flight side by side (`predict`'s schedule for the device)


def measure_end_to_end(engine: "SegmentationEngine", jpegs: list[bytes], batch: int, warmup: int, iters: int,
                       crf: CRFChoice = FROM_OPTIONS) -> EndToEndResult:
    """Segment `warmup` then `iters` batches of JPEG files with the folder pipeline; time each batch
    (`crf` as `engine.predict` takes it; left out: the engine's options)."""
    from segcli.outputs.plan import OutputOptions
    from segcli.pipeline.run import FolderRun
    from segcli.pipeline.scheduler import Schedule
    from segcli.inputs import find_images

    automatic = Schedule.auto(engine.plan.device.type)
    schedule = automatic if batch == automatic.batch_size else automatic.with_choices(batch_size=batch)
    with tempfile.TemporaryDirectory(prefix="segcli-e2e-") as tmp:
        warm_sources = find_images([_write_jpegs(Path(tmp, "warm"), jpegs, warmup * batch)]) if warmup else []
        sources = find_images([_write_jpegs(Path(tmp, "timed"), jpegs, iters * batch)])
        if warm_sources:
            FolderRun(OutputOptions(Path(tmp, "warm-out")), warm_sources).execute(engine, crf, schedule=schedule)
        run = FolderRun(OutputOptions(Path(tmp, "out")), sources)
        finished: list[float] = []
        with PeakMemory(engine.plan.device) as memory:
            started = time.perf_counter()
            summary = run.execute(engine, crf, schedule=schedule,
                                  on_progress=lambda source, status: finished.append(time.perf_counter()))
    if summary.failed or summary.processed != len(sources):
        raise RuntimeError(f"end-to-end run failed: {summary.failed[:1]}")
    ends = finished[batch - 1::batch]
    samples = [(end - begin) * 1000.0 for begin, end in zip([started, *ends[:-1]], ends)]
    stats = LatencyStats.from_samples(samples)
    share = len(sources) * schedule.lanes
    per_image = {stage: summary.stage_ms.get(stage, 0.0) / share for stage in STAGES if stage != "other"}
    per_image["other"] = stats.mean_ms * len(samples) / len(sources) - sum(per_image.values())
    return EndToEndResult(stats, per_image, memory.peak_mb, schedule.lanes)


def _write_jpegs(folder: Path, jpegs: list[bytes], count: int) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"{index:05d}.jpg").write_bytes(jpegs[index % len(jpegs)])
    return folder
