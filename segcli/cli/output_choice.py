"""What `predict` writes: --outputs, --classes, --report, and the pipe mode (`segcli predict - --out -`).

Every bad combination is a usage error (exit 2) raised before the model loads; no torch here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import click

from segcli.cli.options import replaced_option
from segcli.output_names import CLASS_KINDS, DEFAULT_OUTPUTS, KIND_NAMES as OUTPUT_KINDS, PER_CLASS_KINDS

STREAM = "-"


def output_options(func: Callable) -> Callable:
    """--outputs, --classes and --report (--save-probs and --no-overlay, their old spellings: usage errors)."""
    probs, no_overlay = ",".join((*DEFAULT_OUTPUTS, "probs")), ",".join(k for k in DEFAULT_OUTPUTS if k != "overlay")
    options = [
        replaced_option("--save-probs", f"--outputs {probs} (the default outputs and probs)"),
        replaced_option("--no-overlay", f"--outputs {no_overlay} (the default outputs but overlay)"),
        click.option("--outputs", default=None, metavar="LIST",
                     help=f"Comma-separated outputs per image, from {', '.join(OUTPUT_KINDS)} "
                          f"[default: {','.join(DEFAULT_OUTPUTS)}; with --out -: label]. masks: one 1-bit PNG per "
                          "class present (NAME_mask_CLASS.png); cutout: RGBA PNG, transparent outside the kept "
                          "classes; rle: COCO RLE annotations (NAME.rle.json, needs segcli[coco])."),
        click.option("--classes", default=None, metavar="LIST",
                     help="Classes (names or indices, comma-separated) that masks, cutout and rle keep "
                          "[default: every class; cutout: every class but the background]."),
        click.option("--report", is_flag=True,
                     help="Also write OUT/index.html, a page with every image's overlay, classes and timings "
                          "(writes overlays and JSON summaries too)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(frozen=True)
class OutputChoice:
    """The checked output choices of one `predict` run."""

    kinds: tuple[str, ...]                 # what each image writes (one kind when streaming)
    stream: bool = False                   # one image to stdout
    report: bool = False                   # OUT/index.html
    class_items: tuple[str, ...] | None = None  # --classes as given (names or indices)

    @property
    def needs_categories(self) -> bool:
        """The checkpoint's class names are needed before the model loads (file names, --classes)."""
        return self.class_items is not None or "masks" in self.kinds


def choose_outputs(inputs: Sequence[str], out_dir: Path, outputs: str | None, classes: str | None, report: bool,
                   overwrite: bool, skip_existing: bool) -> OutputChoice:
    """The run's outputs from the flags; click.UsageError for a combination that cannot be meant."""
    listed = _parse_list(outputs, "--outputs")
    unknown = [kind for kind in listed or () if kind not in OUTPUT_KINDS]
    if unknown:
        raise click.BadParameter(f"unknown output {', '.join(map(repr, unknown))}: choose from "
                                 f"{', '.join(OUTPUT_KINDS)}", param_hint="--outputs")
    class_items = _parse_list(classes, "--classes", lower=False)
    if str(out_dir) == STREAM:
        given = [flag for flag, on in (("--report", report), ("--overwrite", overwrite),
                                       ("--skip-existing", skip_existing)) if on]
        if given:
            raise click.UsageError(f"{', '.join(given)} do(es) not apply to --out - (one output to stdout)")
        kinds = _stream_kinds(inputs, listed)
    else:
        if STREAM in inputs:
            raise click.UsageError("an image read from stdin (-) goes to stdout: add --out -")
        kinds = _folder_kinds(listed, report)
    if class_items is not None and not set(kinds) & set(CLASS_KINDS):
        raise click.UsageError(f"--classes limits {', '.join(CLASS_KINDS)}: add one of them to --outputs")
    return OutputChoice(kinds, stream=str(out_dir) == STREAM, report=report, class_items=class_items)


def _parse_list(text: str | None, option: str, lower: bool = True) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(dict.fromkeys(item.strip().lower() if lower else item.strip() for item in text.split(",")))
    items = tuple(item for item in items if item)
    if not items:
        raise click.BadParameter("give at least one value", param_hint=option)
    return items


def _folder_kinds(listed: tuple[str, ...] | None, report: bool) -> tuple[str, ...]:
    kinds = list(listed or DEFAULT_OUTPUTS)
    if report:
        kinds += [kind for kind in ("overlay", "json") if kind not in kinds]
    return tuple(kind for kind in OUTPUT_KINDS if kind in kinds)


def _stream_kinds(inputs: Sequence[str], listed: tuple[str, ...] | None) -> tuple[str, ...]:
    if len(inputs) != 1:
        raise click.UsageError("--out - writes one image's output to stdout: give one input (- reads stdin)")
    _check_one_image(inputs[0])
    kinds = listed or ("label",)
    if len(kinds) != 1 or kinds[0] in PER_CLASS_KINDS:
        one_file = ", ".join(kind for kind in OUTPUT_KINDS if kind not in PER_CLASS_KINDS)
        raise click.UsageError(f"--out - writes one file to stdout: choose one of {one_file} with --outputs")
    if click.get_binary_stream("stdout").isatty():
        raise click.UsageError("stdout is a terminal: redirect it to a file or a pipe (... --out - > mask.png)")
    if inputs[0] == STREAM and click.get_binary_stream("stdin").isatty():
        raise click.UsageError("no image on stdin: pipe one in (cat photo.jpg | segcli predict - --out - > mask.png)")
    return kinds


def checkpoint_classes(model: str, weights: str | None, download: bool) -> tuple[str, tuple[str, ...]]:
    """The checkpoint's name and class names, read before the model is built (its file or manifest record)."""
    from segcli.checkpoints.resolve import resolve_checkpoint

    record = resolve_checkpoint(model, weights, allow_download=download).record
    return record.name, tuple(record.categories)


def parse_classes(items: Sequence[str], categories: Sequence[str], checkpoint: str) -> tuple[int, ...]:
    """Class indices of --classes items (exact names, then names in any case, then indices); sorted.

    An item naming no class is a usage error that lists the checkpoint's classes.
    """
    from segcli.outputs.classwise import match_classes

    indices, unknown = match_classes(items, categories)
    if unknown:
        listing = ", ".join(f"{index} {name}" for index, name in enumerate(categories))
        raise click.UsageError(f"unknown class{'es' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                               f"in --classes; {checkpoint} has: {listing}")
    return indices


def read_one_image(source: str, max_pixels: int | None):
    """The image of `--out -` (stdin for "-": header first, bytes bounded by --max-pixels), read before the model
    loads so that a bad input fails at once."""
    from segcli.imageio import DEFAULT_MAX_PIXELS, load_image, read_image_stream

    limit = max_pixels or DEFAULT_MAX_PIXELS
    if source == STREAM:
        return read_image_stream(click.get_binary_stream("stdin"), "stdin", limit)
    return load_image(source, limit)


def stream_image(engine, loaded, kind: str, alpha: float, classes: tuple[int, ...] | None) -> None:
    """Segment one image (`read_one_image`) and write output `kind` to stdout as bytes."""
    from segcli.errors import OutputError
    from segcli.pipeline.stream import predict_to_bytes

    data = predict_to_bytes(engine, loaded, kind, alpha=alpha, classes=classes)
    try:
        write_all(click.get_binary_stream("stdout"), data)
    except OutputError:
        _silence_stdout()  # so the interpreter's final flush does not fail a second time
        raise


def write_all(stream, data: bytes) -> None:
    """Write every byte to `stream`, a raw file on a real stdout (where one write may take only part of them).

    A reader that went away is an OutputError.
    """
    from segcli.errors import OutputError

    remaining = memoryview(data)
    try:
        while remaining:
            remaining = remaining[stream.write(remaining) or 0:]
        stream.flush()
    except BrokenPipeError:
        raise OutputError("stdout was closed before the output was written (the reading end of the pipe exited)") \
            from None


def _silence_stdout() -> None:
    """After a broken pipe: stdout to /dev/null, so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (a test runner's stream): nothing will flush it


def finish_report(run, summary, out_dir: Path, console) -> bool:
    """Write OUT/index.html for a finished (or interrupted) run and say where; False (said in one line) if it failed."""
    from rich.markup import escape

    from segcli.errors import SegcliError, with_hint
    from segcli.report.entries import collect_entries
    from segcli.report.page import write_report
    from segcli.text import printable

    try:
        path = write_report(out_dir, collect_entries(run, summary),
                            {"seconds": summary.seconds, "interrupted": summary.interrupted})
    except SegcliError as exc:
        click.echo(f"Error: report not written: {with_hint(exc)}", err=True)
        return False
    console.print(f"report: {escape(printable(path))}", highlight=False)
    return True


def _check_one_image(item: str) -> None:
    """--out - takes one image file (or stdin): a folder, a glob or a missing file is a usage error, before any load."""
    from segcli.text import printable

    if item == STREAM:
        return
    if os.path.isdir(item):
        raise click.UsageError(f"{printable(item)} is a folder, and --out - writes one image's output to stdout: "
                               "give one image file, or write the folder's outputs with --out DIR")
    if not os.path.lexists(item):
        hint = " (a glob: --out - takes one file)" if any(mark in item for mark in "*?[") else ""
        raise click.UsageError(f"{printable(item)}: no such file{hint}")
