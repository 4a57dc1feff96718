"""`segcli predict scene.tif ... --engine ray`: the planned rasters spread over Ray actors, one raster per task.

The driver plans every output (segcli.raster.run.plan_rasters, as a local run does) and resolves the
checkpoint once; each `RasterActor` builds the same engine (`EngineSettings.build`) and runs the same
windowed code as the local run (`segment_path`: row bands, label GeoTIFF through a temporary renamed
over the target, then the GeoJSON and the JSON), so its label GeoTIFF is the local run's. One raster
is one task: a raster too big for one machine's time is not split over actors (its windows would
need one writer for the shared file; see docs/SCALING.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from segcli.distributed.run import DistributedRunError, _last_line, ray_session
from segcli.distributed.settings import ClusterOptions, EngineSettings, import_ray
from segcli.errors import SegcliError
from segcli.raster.run import RasterOptions, RasterRun, segment_path
from segcli.text import printable


class RasterActor:
    """One engine per actor; `segment` writes one raster's outputs and says how it went."""

    def __init__(self, engine: EngineSettings, policy: Any, options: RasterOptions) -> None:
        self.engine = engine.build()
        self.policy, self.options = policy, options

    def segment(self, path: str, targets: dict[str, str]) -> dict[str, Any]:
        """{"path", "status": ok|failed|error, "message", "lines"}; error: the run stops (as a local run's)."""
        lines: list[str] = []
        try:
            problem = segment_path(Path(path), {kind: Path(target) for kind, target in targets.items()},
                                   self.engine, self.policy, self.options, lines.append)
        except SegcliError as exc:  # an output that cannot be written stops a local run too
            return {"path": path, "status": "error", "message": str(exc), "lines": lines}
        return {"path": path, "status": "ok" if problem is None else "failed", "message": problem, "lines": lines}


def run_rasters_on_ray(run: RasterRun, engine: EngineSettings, cluster: ClusterOptions, policy: Any,
                       options: RasterOptions, console: Any) -> RasterRun:
    """Segment `run.todo` on a pool of actors (at most one per raster); fills `run` as `run_rasters` does."""
    from rich.markup import escape

    ray = import_ray()
    from ray.util import ActorPool

    started = time.perf_counter()
    say = lambda line: console.print(escape(line), highlight=False)  # noqa: E731
    with ray_session(ray, cluster) as workers:
        count = max(1, min(workers.maximum, len(run.todo)))
        remote = ray.remote(num_cpus=1, num_gpus=cluster.gpus_per_worker or 0)(RasterActor)
        say(f"{engine.checkpoint.record.model} {printable(engine.checkpoint.describe())} on Ray: "
            f"{count} worker{'s' * (count != 1)}, one raster each at a time")
        pool = ActorPool([remote.remote(engine, policy, options) for _ in range(count)])
        items = [(str(path), {kind: str(target) for kind, target in targets.items()}) for path, targets in run.todo]
        try:
            for result in pool.map_unordered(lambda actor, item: actor.segment.remote(*item), items):
                _record(result, run, say)
        except ray.exceptions.RayError as exc:
            raise DistributedRunError(f"the Ray run failed: {_last_line(exc)}") from None
    run.seconds = time.perf_counter() - started
    return run


def _record(result: dict[str, Any], run: RasterRun, say) -> None:
    for line in result["lines"]:
        say(line)
    if result["status"] == "error":
        raise SegcliError(result["message"])
    if result["status"] == "failed":
        run.failed.append((Path(result["path"]), result["message"]))
        say(f"failed: {result['message']}")
    else:
        run.processed += 1
