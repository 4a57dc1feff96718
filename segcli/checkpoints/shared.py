"""What many manifest records share, written once: class sets and preprocessing presets.

The shipped manifest defines them at its top::

    "class_sets": {"voc": {"names": ["__background__", "aeroplane", ...], "palette": "voc"}},
    "preprocessing": {"torchvision": {"mean": [...], "std": [...], "resize_shorter": 520, ...}}

and a record names them: ``"classes": "voc"`` (its ``categories`` and, unless the record gives one, its
``palette``) and ``"preprocessing": "torchvision"``. A record may still carry its own ``categories`` list
and ``preprocessing`` object (every record `segcli weights add` writes does). `expand` turns a record's
JSON into the self-contained form `CheckpointRecord.from_dict` validates; `compact` is its inverse for
writing. Also the manifest's JSON layout (`manifest_json`): short lists on one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from segcli.errors import CheckpointError
from segcli.text import printable

_LINE = 100  # characters of list items per line in a written manifest


@dataclass(frozen=True)
class SharedDefinitions:
    """A manifest's class sets (name -> {"names", "palette"}) and preprocessing presets (name -> object)."""

    class_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def expand(self, entry: Any, origin: str) -> Any:
        """A record's JSON with its references replaced by what they name (anything else left as it is)."""
        if not isinstance(entry, dict):
            return entry
        entry = dict(entry)
        if "classes" in entry:
            if "categories" in entry:
                raise CheckpointError(f'{origin}: give "classes" or "categories", not both')
            class_set = _named(self.class_sets, entry.pop("classes"), "class set", origin)
            entry["categories"] = list(class_set["names"])
            entry.setdefault("palette", class_set["palette"])
        if isinstance(entry.get("preprocessing"), str):
            entry["preprocessing"] = dict(_named(self.presets, entry["preprocessing"], "preprocessing preset", origin))
        return entry

    def compact(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A record's JSON (`CheckpointRecord.to_dict`) naming the class set and preset it equals, if any."""
        entry = dict(entry)
        match = next((name for name, class_set in self.class_sets.items()
                      if entry["categories"] == list(class_set["names"]) and entry["palette"] == class_set["palette"]),
                     None)
        if match is not None:  # "classes" takes the place of "categories" (and of "palette")
            entry = {("classes" if key == "categories" else key): (match if key == "categories" else value)
                     for key, value in entry.items() if key != "palette"}
        for name, preset in self.presets.items():
            if _same_preset(entry["preprocessing"], preset):
                entry["preprocessing"] = name
                break
        return entry

    def to_dict(self) -> dict[str, Any]:
        return {"class_sets": self.class_sets, "preprocessing": self.presets}


def _same_preset(given: Any, preset: dict[str, Any]) -> bool:
    from segcli.checkpoints.record import Preprocessing

    return isinstance(given, dict) and Preprocessing.from_dict(given) == Preprocessing.from_dict(preset)


def _named(table: dict[str, Any], name: Any, kind: str, origin: str) -> Any:
    if not isinstance(name, str) or name not in table:
        known = printable(", ".join(table)) or "none (only the shipped manifest defines them)"
        raise CheckpointError(f"{origin}: unknown {kind} {str(name)[:40]!r}; known: {known}")
    return table[name]


def _table(document: dict[str, Any], key: str, origin: str) -> dict[str, dict[str, Any]]:
    table = document.get(key, {})
    if not isinstance(table, dict) or not all(isinstance(name, str) and isinstance(value, dict)
                                              for name, value in table.items()):
        raise CheckpointError(f'{origin}: "{key}" must map names to JSON objects')
    return table


def shared_definitions(document: dict[str, Any], origin: str,
                       inherited: SharedDefinitions | None = None) -> SharedDefinitions:
    """The definitions a manifest document holds (checked), over `inherited` ones of the same names."""
    class_sets = _table(document, "class_sets", origin)
    for name, class_set in class_sets.items():
        if not isinstance(class_set.get("names"), list) or not isinstance(class_set.get("palette", "voc"),
                                                                           (str, list)):
            raise CheckpointError(f'{origin}: class set {name!r} needs "names" (a list) and may give "palette" '
                                  f"(a palette name or a list of [r, g, b])")
    class_sets = {name: {"names": value["names"], "palette": value.get("palette", "voc")}
                  for name, value in class_sets.items()}
    presets = _table(document, "preprocessing", origin)
    if inherited is not None:
        class_sets, presets = inherited.class_sets | class_sets, inherited.presets | presets
    return SharedDefinitions(class_sets, presets)


def _render(value: Any, indent: int) -> str:
    """JSON with objects one key a line and lists of plain values packed into lines of about _LINE characters."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{pad}  {json.dumps(key, ensure_ascii=False)}: {_render(item, indent + 2)}'
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)):
        if any(isinstance(item, (dict, list, tuple)) for item in value):
            if all(isinstance(item, (list, tuple)) and len(item) <= 4 for item in value):  # palettes: [r, g, b]
                return _packed([_render(item, 0) for item in value], pad)
            return "[\n" + ",\n".join(f"{pad}  {_render(item, indent + 2)}" for item in value) + f"\n{pad}]"
        return _packed([json.dumps(item, ensure_ascii=False, allow_nan=False) for item in value], pad)
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _packed(items: list[str], pad: str) -> str:
    if sum(len(item) + 2 for item in items) <= _LINE:
        return "[" + ", ".join(items) + "]"
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) + 2 > _LINE:
            lines.append(line)
            line = ""
        line = f"{line}, {item}" if line else item
    lines.append(line)
    return "[\n" + ",\n".join(f"{pad}  {line}" for line in lines) + f"\n{pad}]"


def manifest_json(document: dict[str, Any]) -> bytes:
    """A manifest document as UTF-8 JSON with a final newline (NaN refused, as JSON has none)."""
    return (_render(document, 0) + "\n").encode("utf-8")
