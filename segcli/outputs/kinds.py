"""The kinds of file `predict` writes per image, as entries of one table.

Each kind names its file after the image's stem, writes its bytes from an `ImageResult` and the
run's `RunInfo`, and recognises its own files (so `--overwrite` never replaces a file segcli did
not write). The bytes depend only on the prediction and the run, so any engine that calls
`OutputKind.write` (the folder pipeline here, a distributed one elsewhere) writes the same files.
A new kind is a name in segcli.output_names (its order: the JSON summary last, as the mark of a
complete set) and an entry here.
A per-class kind (`masks`) writes one file per class present, named after the class: its entries
in a set's paths are keyed `masks:<class index>` (`class_key`, `split_key`).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from segcli.atomic import json_bytes
from segcli.output_names import KIND_NAMES, SET_MARK
from segcli.outputs.classwise import is_our_rle, write_class_mask, write_cutout, write_rle
from segcli.outputs.images import class_fractions, label_indices
from segcli.outputs.overlay import overlay_pixels
from segcli.outputs.png import encode_png
from segcli.outputs.results import ImageResult, RunInfo
from segcli.provenance import written_by_segcli


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
    precision, memory_format = result.execution(run)
    return {
        "image": str(result.path), "size": [width, height],
        "model": run.model, "checkpoint": run.checkpoint, "checkpoint_source": run.checkpoint_source,
        "settings": run.settings,  # what a later --skip-existing compares (segcli.outputs.plan)
        "device": run.device, "precision": precision, "memory_format": memory_format,
        "crf": result.crf if result.crf is not None else run.crf,  # per image: iterations, labels, resolution
        "tta": run.tta, "tile": run.tile, "input_scales": [float(scale) for scale in run.input_scales],
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


_ENTRIES = {kind.name: kind for kind in (
    OutputKind("label", "{stem}.png", write_label, written_by_segcli),
    OutputKind("overlay", "{stem}_overlay.png", write_overlay, written_by_segcli),
    OutputKind("probs", "{stem}_probs.npz", write_probabilities, _is_our_probabilities),
    OutputKind("masks", "{stem}_mask_{cls}.png", write_class_mask, written_by_segcli, per_class=True),
    OutputKind("cutout", "{stem}_cutout.png", write_cutout, written_by_segcli),
    OutputKind("rle", "{stem}.rle.json", write_rle, is_our_rle),
    OutputKind("json", "{stem}.json", write_summary, _is_our_summary),
)}
KINDS: dict[str, OutputKind] = {name: _ENTRIES[name] for name in KIND_NAMES}  # the JSON summary last: marks a set
