"""The Ray Data callable class: one engine per actor, each image decoded, segmented and written as a local run does.

Rows carry what the driver's output plan decided (input path, kind -> output path, whether an
earlier set may be replaced), so names, collisions and `--skip-existing` are the local plan's.
Labels are computed here as uint8 maps and written through `segcli.outputs.writer`, the writer of
the local engine (atomic sets); what goes back to the driver is one status row per image.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segcli.errors import SegcliError, with_hint

if TYPE_CHECKING:
    from segcli.distributed.settings import EngineSettings
    from segcli.model_output import Prediction
    from segcli.imageio import LoadedImage
    from segcli.outputs.plan import PlannedImage

OK = "ok"
FAILED = "failed"


@dataclass(frozen=True)
class WriteSettings:
    """What every image of the run shares beyond the engine (whose options hold the CRF): pixel limit, overlay
    opacity, probabilities, kept classes."""

    max_pixels: int | None = None
    alpha: float = 0.5
    save_probabilities: bool = False
    classes: tuple[int, ...] | None = None  # --classes: what masks, cut-outs and RLE keep
    settings: dict[str, Any] | None = None  # the options the labels depend on (OutputOptions.settings)
    run_started: float | None = None        # time.time() when the run began: sets completed since are this run's


def planned_row(item: "PlannedImage") -> dict[str, Any]:
    """One planned image as a Ray Data row (plain strings: the paths are the plan's, decided on the driver)."""
    return {"path": str(item.source.path),
            "outputs": json.dumps({kind: str(path) for kind, path in item.paths.items()}),
            "replace": bool(item.replace)}


class SegmentActor:
    """`map_batches(SegmentActor, fn_constructor_args=(engine_settings, write_settings), ...)`."""

    def __init__(self, engine: "EngineSettings", settings: WriteSettings) -> None:
        from segcli.outputs.results import RunInfo

        self.engine = engine.build()
        self.settings = settings
        resolved = self.engine.crf_for()  # the CRF of the engine's options, kernel settings filled from the record
        self.run_info = RunInfo.from_engine(self.engine, None if resolved is None else resolved[0], settings.alpha,
                                            classes=settings.classes, settings=settings.settings)
        self.predict_options = {"return_probabilities": settings.save_probabilities}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        """Rows in (path, outputs, replace) -> rows out (path, status, message, timings as JSON)."""
        results: dict[str, list] = {"path": [], "status": [], "message": [], "timings": []}

        def report(path: str, status: str, message: str = "", timings: dict[str, float] | None = None) -> None:
            results["path"].append(path)
            results["status"].append(status)
            results["message"].append(message)
            results["timings"].append(json.dumps(timings or {}))

        rows = [{"path": str(path), "outputs": json.loads(outputs), "replace": bool(replace)}
                for path, outputs, replace in zip(batch["path"], batch["outputs"], batch["replace"])]
        loaded = []
        for row in rows:
            if self._written_by_this_run(row):  # a block Ray retried after its actor died: the set is complete
                report(row["path"], OK)
                continue
            try:
                loaded.append((row, *self._load(row["path"])))
            except SegcliError as exc:
                report(row["path"], FAILED, with_hint(exc))
        for row, image, decode_ms, prediction in self._predict(loaded, report):
            try:
                timings = self._write(row, image, prediction, decode_ms)
            except SegcliError as exc:
                report(row["path"], FAILED, with_hint(exc))
                continue
            report(row["path"], OK, timings=timings)
        return results

    def _written_by_this_run(self, row: dict) -> bool:
        """The row's set is complete (its JSON, renamed last, is in place) and was completed during this run."""
        from segcli.output_names import SET_MARK

        mark = row["outputs"].get(SET_MARK)
        if self.settings.run_started is None or mark is None:
            return False
        try:
            return Path(mark).stat().st_mtime >= self.settings.run_started
        except OSError:
            return False

    def _load(self, path: str) -> tuple["LoadedImage", float]:
        from segcli.imageio import DEFAULT_MAX_PIXELS, load_image

        started = time.perf_counter()
        image = load_image(Path(path), max_pixels=self.settings.max_pixels or DEFAULT_MAX_PIXELS)
        return image, (time.perf_counter() - started) * 1000.0

    def _predict(self, loaded: list, report) -> list[tuple[dict, "LoadedImage", float, "Prediction"]]:
        """(row, image, decode ms, prediction) per image; a batch that fails is retried image by image."""
        if not loaded:
            return []
        try:
            predictions = self.engine.predict_batch([image.rgb for _, image, _ in loaded], **self.predict_options)
            return [(*entry, prediction) for entry, prediction in zip(loaded, predictions)]
        except SegcliError as exc:
            if len(loaded) == 1:
                report(loaded[0][0]["path"], FAILED, with_hint(exc))
                return []
        results = []
        for entry in loaded:
            try:
                results.append((*entry, self.engine.predict_batch([entry[1].rgb], **self.predict_options)[0]))
            except SegcliError as exc:
                report(entry[0]["path"], FAILED, with_hint(exc))
        return results

    def _write(self, row: dict, image: "LoadedImage", prediction: "Prediction", decode_ms: float) -> dict[str, float]:
        from segcli.outputs.results import ImageResult
        from segcli.outputs.writer import write_image_outputs

        timings = {"decode": decode_ms, **prediction.timings_ms}
        result = ImageResult(path=Path(row["path"]), rgb=image.rgb, labels=prediction.labels,
                             probabilities=prediction.probabilities, note=image.note, timings_ms=timings,
                             crf=prediction.crf, plan=prediction.plan)
        paths = {kind: Path(path) for kind, path in row["outputs"].items()}
        written = write_image_outputs(paths, result, self.run_info, replace=row["replace"])
        return {**timings, **written}
