"""What the report shows per input: its status, its files (relative to the output folder), its JSON summary."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segcli.outputs.kinds import split_key

if TYPE_CHECKING:
    from segcli.pipeline.run import FolderRun, RunSummary


@dataclass
class ReportEntry:
    """One input of the run as the report shows it."""

    name: str                                            # the input, relative to the folder it was found in
    status: str                                          # "segmented", "skipped", "failed" or "not reached"
    files: dict[str, Path] = field(default_factory=dict)  # kind -> output file (relative to the output folder)
    summary: dict[str, Any] | None = None                # the image's JSON summary, when there is one
    message: str | None = None                           # why it failed


def collect_entries(run: "FolderRun", summary: "RunSummary") -> list[ReportEntry]:
    """One entry per input of `run`, in input order; inputs that could not be used at all come last."""
    written, skipped = set(summary.written), set(summary.skipped)
    failed = dict(summary.failed)
    planned = [(item.source, item.paths) for item in run.work.todo]
    planned += [(source, run.plan.paths_for(source.relative)) for source in run.work.skipped]
    planned += [(source, {}) for source, _ in run.work.failed]
    planned.sort(key=lambda pair: run.position.get(pair[0].path, -1))
    entries = []
    for source, paths in planned:
        name = source.relative.as_posix()  # as its outputs are named (the failure message has the full path)
        if source.path in failed:
            entries.append(ReportEntry(name, "failed", message=failed.pop(source.path)))
            continue
        status = "segmented" if source.path in written else "skipped" if source.path in skipped else "not reached"
        entries.append(_entry_with_files(name, status, paths, run.plan.out_dir))
    entries += [ReportEntry(str(path), "failed", message=message) for path, message in failed.items()]
    return entries


def _entry_with_files(name: str, status: str, paths: dict[str, Path], out_dir: Path) -> ReportEntry:
    entry = ReportEntry(name, status)
    if status == "not reached":
        return entry
    for key, path in paths.items():
        if split_key(key)[1] is None and path.is_file():  # class masks are not linked one by one
            entry.files[key] = path.relative_to(out_dir)
    if "json" in entry.files:
        try:
            entry.summary = usable_summary(json.loads((out_dir / entry.files["json"]).read_bytes()))
        except (OSError, ValueError):
            entry.summary = None  # shown without classes and timings
    return entry


def usable_summary(document: Any) -> dict[str, Any] | None:
    """An image's JSON summary with the values the page computes with checked: a `size`, a class or a
    timing of the wrong type (a hand-edited or foreign file) is left out instead of failing the run."""
    if not isinstance(document, dict):
        return None
    summary = dict(document)
    size = summary.get("size")
    if "size" in summary and not (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(_count, size))):
        del summary["size"]
    classes = summary.get("classes_present")
    if "classes_present" in summary:
        summary["classes_present"] = [item for item in classes if _class_entry(item)] if isinstance(classes, list) else []
    timings = summary.get("timings_ms")
    if "timings_ms" in summary:
        summary["timings_ms"] = ({stage: value for stage, value in timings.items() if _number(value)}
                                 if isinstance(timings, dict) else {})
    return summary


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _class_entry(item: Any) -> bool:
    return (isinstance(item, dict) and isinstance(item.get("name"), str) and _number(item.get("pixel_fraction"))
            and 0.0 <= item["pixel_fraction"] <= 1.0)
