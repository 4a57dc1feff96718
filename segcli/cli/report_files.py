"""The report files a command's options name (`--json PATH`, `--csv`, ...): checked before any work, announced after.

The rules are `segcli.outputs.report_file`'s; this module finds a run's inputs (the checkpoint file
`--weights` names or the model's default resolves to, a data folder's files) without loading anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import click

STDOUT = "-"


def checkpoint_files(model: str | None, weights: str | None) -> list[Path]:
    """The checkpoint files a run may read (a path given; else the record's copies on disk); nothing hashed or
    loaded."""
    from segcli.checkpoints.manifest import find_record
    from segcli.checkpoints.resolve import default_on_disk, files_on_disk
    from segcli.errors import SegcliError

    if weights is not None and os.path.lexists(os.path.expanduser(weights)):
        return [Path(os.path.expanduser(weights))]
    try:
        if weights is not None:
            return [path for path, _ in files_on_disk(find_record(weights))]
        found = default_on_disk(model) if model else None
    except SegcliError:
        return []  # an unknown name: the model load says so, in its own words
    return [found[1]] if found else []


def data_files(data_dir: str | os.PathLike[str] | None, split: str) -> list[Path]:
    """The files of a VOC-format folder a run reads: the split file, its images and masks, the class list.

    A DatasetError (no such split, a missing image) is raised here, before the model loads.
    """
    if data_dir is None:
        return []
    from segcli.data.voc import read_split

    root = Path(data_dir)
    pairs = read_split(root, split)
    listed = [root / "ImageSets" / "Segmentation" / f"{split}.txt", root / "dataset.json", root / "classes.txt"]
    return listed + [path for pair in pairs for path in pair]


def check_reports(named: Iterable[tuple[str, str | os.PathLike[str] | None, object]], inputs: Iterable[Path] = (),
                  overwrite: bool = False) -> list[Path]:
    """Check each (option, path, recogniser) whose path is given and is not stdout; the paths to write, in order."""
    from segcli.outputs.report_file import ReportFile, check_report_files

    files = [ReportFile(option, Path(path), is_ours) for option, path, is_ours in named
             if path is not None and str(path) != STDOUT]
    check_report_files(files, inputs, overwrite)
    return [report.path for report in files]


def announce(path: str | os.PathLike[str]) -> None:
    """The one stderr line that says what was written."""
    from segcli.text import printable

    click.echo(f"wrote {printable(str(path))}", err=True)
