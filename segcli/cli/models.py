"""`segcli models`: the zoo, its aliases, and the checkpoint each model would run with now."""

from __future__ import annotations

from typing import Any

import click

from segcli.cli.options import overwrite_option
from segcli.cli.report_files import announce, check_reports
from segcli.cli.tables import STDOUT, Column, json_option, print_table, write_json

COLUMNS = (Column("name", keep_whole=True), Column("description"), Column("weights"))


@click.command("models")
@json_option
@overwrite_option("Replace an existing --json file segcli did not write.")
def models(json_path: str | None, overwrite: bool) -> None:
    """List the model zoo and which checkpoint each model would use (none anywhere is marked)."""
    from segcli.models import ALIASES, MODEL_SPECS
    from segcli.outputs.report_file import json_list_of

    check_reports([("--json", json_path, json_list_of("name", "description", "weights"))], (), overwrite)

    entries = [_model_entry(spec, [alias for alias, target in ALIASES.items() if target == spec.name])
               for spec in MODEL_SPECS]
    if json_path is not None:
        write_json(entries, json_path)
        if json_path != STDOUT:
            announce(json_path)
        return
    rows = [[entry["name"], entry["description"], _weights_cell(entry)] for entry in entries]
    by_name = {entry["name"]: entry for entry in entries}
    rows += [[alias, f"alias of {target}", _weights_cell(by_name[target])] for alias, target in ALIASES.items()]
    print_table("segcli model zoo", COLUMNS, rows)


def _model_entry(spec, aliases: list[str]) -> dict[str, Any]:
    """What `--model NAME` would load now, without downloading or hashing anything."""
    from segcli.checkpoints.manifest import records_for_model
    from segcli.checkpoints.record import SOURCE_LABELS
    from segcli.checkpoints.resolve import default_on_disk, synthetic_scenes_warning

    records = records_for_model(spec.name)
    found = default_on_disk(spec.name)
    weights, status, suggestion = None, "none", None
    if found is not None:
        record, path, source = found
        weights = {"name": record.name, "path": str(path), "source": SOURCE_LABELS[source],
                   "synthetic_scenes_only": synthetic_scenes_warning(record) is not None}
        status = "on disk"
    elif records:
        downloadable = [record for record in records if record.layout != "segcli" and record.url]
        status = "downloadable" if downloadable else "not on disk"
        suggestion = (downloadable or records)[0].name
    return {"name": spec.name, "description": spec.description, "aliases": aliases,
            "checkpoints": [record.name for record in records], "weights_status": status, "weights": weights,
            "suggested_checkpoint": suggestion}


def _weights_cell(entry: dict[str, Any]) -> str:
    status, weights = entry["weights_status"], entry["weights"]
    if status == "on disk":
        only = "; synthetic scenes only" if weights["synthetic_scenes_only"] else ""
        return f"{weights['name']} ({weights['source']}{only})"
    if status == "downloadable":
        return f"none on disk: segcli weights pull {entry['suggested_checkpoint']}"
    if status == "not on disk":
        return f"none on disk: {entry['suggested_checkpoint']} has no public download (segcli weights list)"
    return "none anywhere: pass --weights FILE or train one"
