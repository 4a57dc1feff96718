"""One image in, one output's bytes out: `segcli predict - --out -` (stdin to stdout, for shell pipes).

The bytes are those the folder run writes for the same kind (`OutputKind.write`), so a piped label
PNG equals the file `segcli predict img.jpg` leaves on disk.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from segcli.outputs.kinds import KINDS
from segcli.outputs.results import ImageResult, RunInfo

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine
    from segcli.model_output import Prediction
    from segcli.imageio import LoadedImage

STREAM_KINDS = tuple(name for name, kind in KINDS.items() if not kind.per_class)  # one file each


def predict_to_bytes(engine: "SegmentationEngine", loaded: "LoadedImage", kind: str, alpha: float = 0.5,
                     classes: tuple[int, ...] | None = None) -> bytes:
    """Segment a decoded image (with the CRF of the engine's options, if any) and return the file of output
    `kind` (one of STREAM_KINDS) as bytes."""
    if kind not in STREAM_KINDS:
        raise ValueError(f"{kind!r} is not a one-file output: choose from {', '.join(STREAM_KINDS)}")
    prediction = engine.predict(loaded.rgb, return_probabilities=kind == "probs")
    return prediction_to_bytes(engine, loaded, prediction, kind, alpha, classes)


def prediction_to_bytes(engine: "SegmentationEngine", loaded: "LoadedImage", prediction: "Prediction", kind: str,
                        alpha: float = 0.5, classes: tuple[int, ...] | None = None) -> bytes:
    """The file of output `kind` (one of STREAM_KINDS) for an image already segmented by `engine` (e.g. in a
    batch: `segcli serve`), byte for byte what the folder run writes."""
    result, run = result_and_run(engine, loaded, prediction, alpha, classes)
    buffer = io.BytesIO()
    KINDS[kind].write(result, run, buffer)
    return buffer.getvalue()


def result_and_run(engine: "SegmentationEngine", loaded: "LoadedImage", prediction: "Prediction",
                   alpha: float = 0.5, classes: tuple[int, ...] | None = None) -> tuple[ImageResult, RunInfo]:
    """What the output kinds write from: the image's result and the run's facts, as the folder run makes them."""
    result = ImageResult(path=Path(loaded.path), rgb=loaded.rgb, labels=prediction.labels,
                         probabilities=prediction.probabilities, note=loaded.note,
                         timings_ms=dict(prediction.timings_ms), crf=prediction.crf, plan=prediction.plan)
    resolved = engine.crf_for()
    return result, RunInfo.from_engine(engine, None if resolved is None else resolved[0], alpha, classes=classes)
