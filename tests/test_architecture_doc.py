"""docs/ARCHITECTURE.md names every module of the package, and every module it names exists.

A line names files as paths (`checkpoints/formats.py`) or, after a package (`outputs/`, `checkpoints/loading.py`),
by their bare names (`plan.py`, `saving.py`): a bare name belongs to the package named last before it on that line,
or to the top level (`engine.py`) when none is."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segcli"
DOC = ROOT / "docs" / "ARCHITECTURE.md"

_NAME = re.compile(r"(?<![\w./<>*-])(?:(?P<folder>(?:[a-z_]+/)+)(?P<file>[a-z_0-9]+\.py)?|(?P<bare>[a-z_0-9]+\.py))"
                   r"(?![\w/])")


def named_paths(text: str) -> set[str]:
    """Every file path a text names ("outputs/plan.py"; "segcli/x.py" as "x.py"), and every folder ("outputs/")."""
    names = set()
    for line in text.splitlines():
        folder = ""
        for match in _NAME.finditer(line):
            if match["folder"]:
                folder = match["folder"].removeprefix("segcli/")
                names.add(folder + (match["file"] or ""))
            else:
                names.add(folder + match["bare"])
    names.discard("")
    return names


def _modules() -> list[str]:
    return sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py"))


def test_every_module_is_named_in_the_architecture_document():
    named = named_paths(DOC.read_text(encoding="utf-8"))
    missing = [module for module in _modules()
               if module not in named and not (module.endswith("/__init__.py") and module[:-len("__init__.py")] in named)]
    assert missing == []


def test_every_module_the_architecture_document_names_exists():
    gone = [name for name in sorted(named_paths(DOC.read_text(encoding="utf-8")))
            if not ((PACKAGE / name).exists() or (ROOT / name).exists())]
    assert gone == []


def test_the_names_are_read_as_the_document_writes_them():
    text = ("| `outputs/` | `plan.py` (names), `kinds.py`; `distributed/rasters.py` runs `run.py` |\n"
            "| `engine.py` | uses `inputs.py` and segcli/__init__.py; `models/<family>.py` |\n")
    assert named_paths(text) == {"outputs/", "outputs/plan.py", "outputs/kinds.py", "distributed/rasters.py",
                                 "distributed/run.py", "engine.py", "inputs.py", "__init__.py", "models/"}
