"""The output plan of a run: which files each image writes, and what happens to files already there.

Everything is decided before the model loads: two images whose outputs share a name, an output
that would replace an input of the run, an output folder that cannot be used and a rerun into
earlier outputs without `--overwrite`/`--skip-existing` each fail once, up front. A path that
cannot be checked (permission, name too long) or a file segcli did not write fails only its image.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from segcli.errors import OutputError
from segcli.outputs.classwise import class_file_labels
from segcli.output_names import SET_MARK
from segcli.outputs.kinds import KINDS, class_key, split_key
from segcli.text import printable

if TYPE_CHECKING:
    from segcli.inputs import ImageSource

_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR})
NAME_MAX = 255  # bytes in one file name on common file systems (checked here even where the folder is not made yet)


@dataclass(frozen=True)
class OutputOptions:
    """What `predict` writes for each image, and what it does with outputs already there."""

    out_dir: Path
    alpha: float = 0.5            # overlay opacity of the class colours
    save_probabilities: bool = False
    write_overlay: bool = True
    overwrite: bool = False       # replace existing outputs (never an input, never a file segcli did not write)
    skip_existing: bool = False   # leave images whose outputs are complete (resume a big run); complete the others
    outputs: tuple[str, ...] | None = None     # kinds to write (`--outputs`); None: label, overlay?, probs?, json
    classes: tuple[int, ...] | None = None     # classes masks, cut-outs and RLE keep (`--classes`); None: defaults
    categories: tuple[str, ...] = ()           # the checkpoint's class names (needed to name per-class files)
    # the options the labels and images depend on (precision, CRF, tiling, TTA, scales, overlay, classes), written
    # into each JSON summary; with skip_existing, a set is this run's only if its summary records these settings
    # and `checkpoint` (name, source as the engine describes it)
    settings: dict[str, Any] | None = field(default=None, hash=False)
    checkpoint: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.outputs is None:
            return
        unknown = sorted(set(self.outputs) - set(KINDS))
        if unknown or not self.outputs:
            raise OutputError(f"unknown outputs {', '.join(unknown) or '(none given)'}: choose from {', '.join(KINDS)}")
        # the flags follow the list, so code reading them (what to ask the engine for) agrees with it
        object.__setattr__(self, "save_probabilities", "probs" in self.outputs)
        object.__setattr__(self, "write_overlay", "overlay" in self.outputs)

    def kind_names(self) -> tuple[str, ...]:
        """The kinds written per image, in writing order (that of KINDS); the JSON summary (the set's mark) last."""
        if self.outputs is not None:
            return tuple(name for name in KINDS if name in self.outputs)
        names = ["label"]
        if self.write_overlay:
            names.append("overlay")
        if self.save_probabilities:
            names.append("probs")
        return (*names, SET_MARK)

    def class_indices(self) -> tuple[int, ...]:
        """The classes a per-class kind may write a file for."""
        return self.classes if self.classes is not None else tuple(range(len(self.categories)))


@dataclass(frozen=True)
class PlannedImage:
    """One image to segment: its input and the files its set is written to."""

    source: "ImageSource"
    paths: dict[str, Path]  # kind -> path, in writing order
    replace: bool = False   # files of an earlier set of it may be replaced


@dataclass(frozen=True)
class Refusal:
    """Why one image's outputs cannot be written: `reason` in library terms (what `str` gives a Python caller),
    `hint` what to do on the command line (`errors.with_hint` joins them for a `failed:` line)."""

    reason: str
    hint: str | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass
class RunPlan:
    """What a run will do with each input, decided before the model loads."""

    todo: list[PlannedImage] = field(default_factory=list)
    skipped: list["ImageSource"] = field(default_factory=list)        # complete outputs kept (--skip-existing)
    failed: list[tuple["ImageSource", Refusal]] = field(default_factory=list)
    foreign: list[tuple[Path, str]] = field(default_factory=list)     # complete sets of another checkpoint/settings


class OutputPlan:
    """Output paths per image under `options.out_dir` (sub-folders of the inputs kept), and the checks on them."""

    def __init__(self, options: OutputOptions) -> None:
        if options.overwrite and options.skip_existing:
            raise OutputError("overwrite and skip_existing exclude each other")
        self.options = options
        self.out_dir = Path(options.out_dir)
        self.kinds = options.kind_names()
        if any(KINDS[name].per_class for name in self.kinds) and not options.categories:
            raise ValueError("per-class outputs need the checkpoint's categories (OutputOptions.categories)")
        self._class_labels = class_file_labels(options.categories)

    def paths_for(self, relative: Path, kinds: Iterable[str] | None = None) -> dict[str, Path]:
        """key -> output path of the image at `relative` (this run's kinds unless `kinds` is given).

        A per-class kind has one key per class it may write (`masks:3`); which of them are written
        depends on the prediction, so the plan checks them all.
        """
        relative = Path(relative)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"output name must be a relative path inside the output folder, got {relative}")
        folder = self.out_dir / relative.parent
        paths: dict[str, Path] = {}
        for name in (self.kinds if kinds is None else kinds):
            kind = KINDS[name]
            if not kind.per_class:
                paths[name] = kind.path(folder, relative.stem)
                continue
            for index in self.options.class_indices():
                paths[class_key(name, index)] = kind.path(folder, relative.stem, self._class_labels[index])
        return paths

    def prepare(self, sources: list["ImageSource"]) -> RunPlan:
        """Check the run against the disk: raises OutputError for a problem of the whole run."""
        self._check_out_dir()
        planned = [(source, self.paths_for(source.relative)) for source in sources]
        _check_no_shared_names(planned)
        _check_inputs_kept(planned)
        _check_folders_inside(self.out_dir, planned)
        run = RunPlan()
        existing: list[Path] = []
        for source, paths in planned:
            self._plan_image(source, paths, run, existing)
        if run.foreign:
            summary, difference = run.foreign[0]
            raise OutputError(
                f"{printable(self.out_dir)} holds the outputs of {len(run.foreign)} images made with another "
                f"checkpoint or other settings (e.g. {printable(summary)}: {difference})",
                hint="--skip-existing keeps only this run's: pass --overwrite to replace them, or choose another --out")
        if existing:
            count = sum(1 for item in run.todo if item.replace)
            raise OutputError(
                f"{printable(self.out_dir)} already holds the outputs of {count} of {len(sources)} images "
                f"(e.g. {printable(existing[0])}): neither overwrite nor skip_existing is set",
                hint="pass --overwrite to replace them, or --skip-existing to keep them and segment the rest")
        return run

    def _check_out_dir(self) -> None:
        try:
            mode = os.stat(self.out_dir).st_mode
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return  # made when the first set is written
            raise OutputError(f"cannot use output folder {printable(self.out_dir)}: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(mode):
            raise OutputError(f"output folder {printable(self.out_dir)} is a file", hint="choose another --out")

    def _plan_image(self, source: "ImageSource", paths: dict[str, Path], run: RunPlan, existing: list[Path]) -> None:
        found: list[Path] = []
        empty = missing = False
        for key, path in paths.items():
            problem = _probe(key, path)
            if problem in ("ours", "empty"):
                found.append(path)
                empty |= problem == "empty"
            elif isinstance(problem, Refusal):
                run.failed.append((source, problem))
                return
            else:
                missing |= split_key(key)[1] is None  # a class's file is there only when the class is
        fixed_names = any(split_key(key)[1] is None for key in paths)  # class files alone cannot tell a set is whole
        complete = fixed_names and not (missing or empty) and _class_files_complete(paths)
        if complete and self.options.skip_existing:
            difference = self._difference(paths)
            if difference is None:
                run.skipped.append(source)
                return
            run.foreign.append((paths[SET_MARK], difference))
        if found and not (self.options.overwrite or self.options.skip_existing):
            existing.extend(found)
        run.todo.append(PlannedImage(source, paths, replace=bool(found)))


    def _difference(self, paths: dict[str, Path]) -> str | None:
        """How a complete set's JSON summary differs from this run (checkpoint, settings); None: it is this run's.

        Without a JSON summary in the set, or without the run's checkpoint and settings, nothing can be compared.
        """
        options = self.options
        if SET_MARK not in paths or (options.checkpoint is None and options.settings is None):
            return None
        try:
            summary = json.loads(paths[SET_MARK].read_bytes())
        except (OSError, ValueError):
            return "an unreadable JSON summary"
        if options.checkpoint is not None:
            recorded = (summary.get("checkpoint"), summary.get("checkpoint_source"))
            if recorded != tuple(options.checkpoint):
                return f"checkpoint {recorded[0]} ({recorded[1]}), this run {options.checkpoint[0]} ({options.checkpoint[1]})"
        if options.settings is not None:
            wanted = json.loads(json.dumps(options.settings))  # as a JSON file holds it: tuples become lists
            recorded = summary.get("settings") or {}
            changed = sorted(key for key in set(wanted) | set(recorded) if wanted.get(key) != recorded.get(key))
            if changed:
                return ", ".join(f"{key} {json.dumps(recorded.get(key))}, this run {json.dumps(wanted.get(key))}"
                                 for key in changed[:3])
        return None


_MOVE_IT = "move it or choose another --out"


def _probe(kind: str, path: Path) -> str | Refusal | None:
    """None: nothing there; "ours": a file segcli wrote; "empty": an empty file; else why the image cannot be written.
    """
    if len(os.fsencode(path.name)) > NAME_MAX:
        return Refusal(f"cannot write {printable(path)}: {os.strerror(errno.ENAMETOOLONG)}")
    try:
        info = os.lstat(path)
    except OSError as exc:
        if exc.errno in _ABSENT:
            return None
        return Refusal(f"cannot write {printable(path)}: {exc.strerror or exc}")
    mode, st_size = info.st_mode, info.st_size
    if not stat.S_ISREG(mode):
        return Refusal(f"{printable(path)} exists and is not a regular file: not replaced", hint=_MOVE_IT)
    if st_size == 0:
        return "empty"  # holds nothing anyone could lose: what a power failure leaves of a new output
    if not split_key(kind)[0].is_ours(path):
        return Refusal(f"{printable(path)} exists and was not written by segcli: not replaced", hint=_MOVE_IT)
    return "ours"


def _class_files_complete(paths: dict[str, Path]) -> bool:
    """With the JSON summary in the set: a file for each class it lists as present (of those the run writes)."""
    if SET_MARK not in paths or all(split_key(key)[1] is None for key in paths):
        return True
    try:
        present = {entry["index"] for entry in json.loads(paths[SET_MARK].read_bytes())["classes_present"]}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(path.exists() for key, path in paths.items() if split_key(key)[1] in present)


def _check_no_shared_names(planned: list[tuple["ImageSource", dict[str, Path]]]) -> None:
    """Two inputs whose outputs would share a file name (cat.jpg and cat.png; cat.jpg and cat_overlay.jpg)."""
    owner: dict[Path, "ImageSource"] = {}
    for source, paths in planned:
        for path in paths.values():
            first = owner.setdefault(path, source)
            if first is not source:
                raise OutputError(
                    f"{printable(first.path)} and {printable(source.path)} would both write {printable(path)}: "
                    "rename one, or segment them in separate runs",
                    hint="give each run its own --out")


def _check_inputs_kept(planned: list[tuple["ImageSource", dict[str, Path]]]) -> None:
    """No output may replace an input of this run (an in-place run over PNGs would)."""
    inputs = {os.path.realpath(source.path) for source, _ in planned}
    real_folders: dict[Path, str] = {}
    for source, paths in planned:
        for name, path in paths.items():
            if path.parent not in real_folders:
                real_folders[path.parent] = os.path.realpath(path.parent)
            if os.path.join(real_folders[path.parent], path.name) in inputs:
                raise OutputError(
                    f"{printable(path)} is an input of this run, and the {name} output of "
                    f"{printable(source.relative)} would replace it: write the outputs to another folder",
                    hint="choose another --out")


def _check_folders_inside(out_dir: Path, planned: list[tuple["ImageSource", dict[str, Path]]]) -> None:
    """A linked sub-folder of --out that leads outside it would put outputs among files segcli never owned."""
    root = os.path.realpath(out_dir)
    checked: set[Path] = set()
    for _, paths in planned:
        for path in paths.values():
            folder = path.parent
            if folder in checked:
                continue
            checked.add(folder)
            real = os.path.realpath(folder)
            if os.path.commonpath([root, real]) != root:
                linked = next((parent for parent in (folder, *folder.parents) if parent.is_symlink()), folder)
                raise OutputError(f"{printable(linked)} leads to {printable(os.path.realpath(linked))}, outside the "
                                  f"output folder {printable(out_dir)}: segcli writes only inside the output folder",
                                  hint="remove the link or choose another --out")
