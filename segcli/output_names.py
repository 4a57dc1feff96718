"""The names of the kinds of file `predict` writes per image, listed once and importing nothing.

segcli.outputs.kinds builds its table of writers on these names, in this order (the order files are
written: the JSON summary last, as the mark of a complete set); the CLI's --outputs choices and help
come from here too, so `segcli predict --help` needs neither numpy nor the writers.
"""

from __future__ import annotations

KIND_NAMES = ("label", "overlay", "probs", "masks", "cutout", "rle", "json")
DEFAULT_OUTPUTS = ("label", "overlay", "json")
CLASS_KINDS = ("masks", "cutout", "rle")  # the outputs --classes limits
PER_CLASS_KINDS = ("masks",)              # one file per class present: not one file for stdout
SET_MARK = "json"
