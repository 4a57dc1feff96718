"""The JSON Schemas (draft 2020-12) of the JSON files `predict` writes, shipped as package data:
`summary` (NAME.json) and `rle` (NAME.rle.json). Validate with any JSON Schema library, e.g.

    import jsonschema
    from segcli.outputs.schema import load_schema
    jsonschema.validate(document, load_schema("summary"))
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA_NAMES = ("summary", "rle")


def load_schema(name: str) -> dict[str, Any]:
    """The schema `name` (one of SCHEMA_NAMES) as a dict."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}: use one of {', '.join(SCHEMA_NAMES)}")
    text = resources.files("segcli.outputs").joinpath("schemas", f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)
