"""The kinds of file `predict` writes per image, as entries of one table.

Each kind names its file after the image's stem, writes its bytes from an `ImageResult` and the
run's `RunInfo`, and recognises its own files (so `--overwrite` never replaces a file segcli did
not write). The bytes depend only on the prediction and the run, so any engine that calls
`OutputKind.write` (the folder pipeline here, a distributed one elsewhere) writes the same files.
New kinds are new entries of `KINDS`; the JSON summary stays last, as the mark of a complete set.
A per-class kind (`masks`) writes one file per class present, named after the class: its entries
in a set's paths are keyed `masks:<class index>` (`class_key`, `split_key`).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

import numpy as np

from segcli.atomic import json_bytes
from segcli.outputs.classwise import is_our_rle, write_class_mask, write_cutout, write_rle
from segcli.outputs.images import class_fractions, label_indices
from segcli.outputs.overlay import overlay_pixels
from segcli.outputs.png import encode_png, written_by_segcli
from segcli.palettes import display_palette, flat_palette

if TYPE_CHECKING:
    from segcli.crf import CRFParams
    from segcli.engine import SegmentationEngine


@dataclass(frozen=True)
class RunInfo:
    """What every image's outputs share: the checkpoint, how the model ran, how outputs are drawn."""

    model: str
    checkpoint: str
    checkpoint_source: str
    device: str
    precision: str
    categories: tuple[str, ...]
    palette: Any                   # as outputs draw it (`display_palette`)
    crf: dict[str, Any] | None = None
    alpha: float = 0.5             # overlay opacity of the class colours
    note: str | None = None        # said in every image's JSON note (e.g. the checkpoint's synthetic-scenes warning)
    classes: tuple[int, ...] | None = None  # the classes masks, cut-outs and RLE keep (--classes); None: their defaults

    @classmethod
    def from_engine(cls, engine: "SegmentationEngine", crf: "CRFParams | None" = None, alpha: float = 0.5,
                    classes: tuple[int, ...] | None = None) -> "RunInfo":
        record = engine.record
        return cls(model=record.model, checkpoint=record.name, checkpoint_source=engine.source,
                   device=str(engine.plan.device), precision=engine.plan.precision,
                   categories=tuple(record.categories), palette=display_palette(record.palette, record.dataset),
                   crf=None if crf is None else asdict(crf), alpha=alpha,
                   # engines that know their checkpoint was trained on synthetic scenes say so (issue 12)
                   note=getattr(engine, "checkpoint_warning", None), classes=classes)

    @cached_property
    def flat_palette(self) -> list[int]:
        return flat_palette(self.palette, len(self.categories))


@dataclass
class ImageResult:
    """One image's prediction, as the output kinds write it."""

    path: Path                               # the input file
    rgb: np.ndarray                          # H x W x 3 uint8, as the model saw it
    labels: np.ndarray                       # H x W class indices
    probabilities: np.ndarray | None = None  # C x H x W, when asked for
    note: str | None = None                  # e.g. "animated GIF: first of 3 frames used"
    timings_ms: dict[str, float] = field(default_factory=dict)
    crf: dict[str, Any] | None = None        # the CRF that ran on this image (segcli.crf.CRFRun.to_dict)


@dataclass(frozen=True)
class OutputKind:
    """One file per image: its name, how it is written, how segcli recognises one it wrote."""

    name: str
    filename: str                                          # with "{stem}" (and "{cls}"), e.g. "{stem}_overlay.png"
    write: Callable[..., None]                             # (result, run, handle[, class index])
    is_ours: Callable[[Path], bool]
    per_class: bool = False                                # one file per class present, "{cls}" in its name

    def path(self, folder: Path, stem: str, cls: str = "") -> Path:
        return folder / self.filename.format(stem=stem, cls=cls)


def class_key(kind: str, class_index: int) -> str:
    """The key of one class's file of a per-class kind in a set's paths, e.g. "masks:3"."""
    return f"{kind}:{class_index}"


def split_key(key: str) -> tuple[OutputKind, int | None]:
    """The kind of a set's paths key, and its class index for a per-class kind."""
    name, _, index = key.partition(":")
    return KINDS[name], (int(index) if index else None)


def write_label(result: ImageResult, run: RunInfo, handle: BinaryIO) -> None:
    indices = label_indices(result.labels, len(run.categories))
    handle.write(encode_png(indices, palette=run.flat_palette, provenance="label"))


def write_overlay(result: ImageResult, run: RunInfo, handle: BinaryIO) -> None:
    pixels = overlay_pixels(result.rgb, result.labels, run.categories, run.palette, run.alpha)
    handle.write(encode_png(pixels, provenance="overlay"))


def write_probabilities(result: ImageResult, run: RunInfo, handle: BinaryIO) -> None:
    if result.probabilities is None:
        raise ValueError("no probabilities to write: predict with return_probabilities=True")
    np.savez_compressed(handle, probs=np.asarray(result.probabilities, dtype=np.float16),
                        categories=np.array(list(run.categories), dtype=str))


def summary_document(result: ImageResult, run: RunInfo) -> dict[str, Any]:
    """The JSON summary: the image, the run, timings and the classes present with their pixel fractions."""
    height, width = result.labels.shape
    fractions = class_fractions(result.labels, len(run.categories))
    return {
        "image": str(result.path), "size": [width, height],
        "model": run.model, "checkpoint": run.checkpoint, "checkpoint_source": run.checkpoint_source,
        "device": run.device, "precision": run.precision,
        "crf": result.crf if result.crf is not None else run.crf,  # per image: iterations, labels, resolution
        "note": "; ".join(note for note in (result.note, run.note) if note) or None,
        "timings_ms": {key: round(value, 3) for key, value in result.timings_ms.items()},
        "categories": list(run.categories),
        "classes_present": [
            {"index": int(i), "name": run.categories[i], "pixel_fraction": round(float(fractions[i]), 6)}
            for i in np.flatnonzero(fractions)
        ],
    }


def write_summary(result: ImageResult, run: RunInfo, handle: BinaryIO) -> None:
    handle.write(json_bytes(summary_document(result, run)))


def _is_our_summary(path: Path) -> bool:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and {"checkpoint", "classes_present"} <= document.keys()


def _is_our_probabilities(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return {"probs.npy", "categories.npy"} <= set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


KINDS: dict[str, OutputKind] = {kind.name: kind for kind in (
    OutputKind("label", "{stem}.png", write_label, written_by_segcli),
    OutputKind("overlay", "{stem}_overlay.png", write_overlay, written_by_segcli),
    OutputKind("probs", "{stem}_probs.npz", write_probabilities, _is_our_probabilities),
    OutputKind("masks", "{stem}_mask_{cls}.png", write_class_mask, written_by_segcli, per_class=True),
    OutputKind("cutout", "{stem}_cutout.png", write_cutout, written_by_segcli),
    OutputKind("rle", "{stem}.rle.json", write_rle, is_our_rle),
    OutputKind("json", "{stem}.json", write_summary, _is_our_summary),  # last: marks a complete set
)}
SET_MARK = "json"
