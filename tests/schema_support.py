"""Validating segcli's JSON outputs against the JSON Schemas it publishes (segcli/outputs/schemas/)."""

from __future__ import annotations

from typing import Any


def _validate(document: Any, name: str) -> None:
    import jsonschema

    from segcli.outputs.schema import load_schema

    jsonschema.validate(document, load_schema(name))


def assert_valid_summary(document: Any) -> None:
    """An image's NAME.json, as read back from disk, matches segcli/outputs/schemas/summary.schema.json."""
    _validate(document, "summary")


def assert_valid_rle(document: Any) -> None:
    """NAME.rle.json matches segcli/outputs/schemas/rle.schema.json."""
    _validate(document, "rle")
