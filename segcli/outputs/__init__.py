"""What `predict` writes per image: label PNGs, overlays with a legend, probabilities, JSON summaries.

`plan` decides the files of a run (names, what exists, what may be replaced), `kinds` holds one
entry per kind of file, `writer` writes one image's set atomically, `folder` prepares the output
folder; `images`, `overlay` and `png` draw and encode.
"""

from segcli.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from segcli.outputs.images import (
    atomic_save_image, atomic_save_npz, check_labels, class_fractions, colorize, label_png, percent_text,
)
from segcli.outputs.kinds import KINDS, ImageResult, OutputKind, RunInfo, summary_document
from segcli.outputs.overlay import overlay, overlay_pixels
from segcli.outputs.plan import OutputOptions, OutputPlan, PlannedImage, RunPlan
from segcli.outputs.writer import write_image_outputs

__all__ = [
    "KINDS", "ImageResult", "OutputKind", "OutputOptions", "OutputPlan", "PlannedImage", "RunInfo", "RunPlan",
    "atomic_save_image", "atomic_save_npz", "atomic_write", "atomic_write_bytes", "atomic_write_json",
    "check_labels", "class_fractions", "colorize", "label_png", "overlay", "overlay_pixels", "percent_text",
    "summary_document", "write_image_outputs",
]
