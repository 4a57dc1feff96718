"""`segcli weights`: list, pull, add and verify checkpoints (logic in segcli.checkpoints)."""

from __future__ import annotations

import click

from segcli.checkpoints.record import LAYOUTS
from segcli.cli.options import overwrite_option, zoo_model_option
from segcli.cli.report_files import announce, check_reports
from segcli.cli.tables import STDOUT, Column, json_option, print_table, write_json



def shipped_class_sets() -> dict[str, dict]:
    """The class sets the shipped manifest defines (name -> names and palette): what --classes-from offers."""
    from segcli.checkpoints.manifest import read_shared_definitions, shipped_manifest_path

    return read_shared_definitions(shipped_manifest_path()).class_sets


@click.group("weights")
def weights() -> None:
    """List, pull, add and verify checkpoints."""


@weights.command("list")
@zoo_model_option(help="Only this model's checkpoints (names: `segcli models`).")
@json_option
@overwrite_option("Replace an existing --json file segcli did not write (never a checkpoint file).")
def list_weights(model: str | None, json_path: str | None, overwrite: bool) -> None:
    """Every known checkpoint, its mIoU (and the data it was measured on), and where it is on disk."""
    from segcli.checkpoints.manifest import load_manifest, records_for_model
    from segcli.checkpoints.record import SOURCE_LABELS
    from segcli.checkpoints.resolve import files_on_disk, find_on_disk
    from segcli.outputs.report_file import json_list_of

    records = records_for_model(model) if model else list(load_manifest().values())
    every_file = [path for record in load_manifest().values() for path, _ in files_on_disk(record)]
    check_reports([("--json", json_path, json_list_of(*WEIGHTS_JSON_KEYS))], every_file, overwrite)
    entries = []
    for record in records:
        found = find_on_disk(record)
        entries.append({
            "name": record.name, "model": record.model, "dataset": record.dataset, "classes": record.num_classes,
            "miou": record.metric_dict.get("miou"), "miou_on": record.miou_measured_on,
            "on_disk": str(found[0]) if found else None, "source": SOURCE_LABELS[found[1]] if found else None,
            "url": record.url, "sha256": record.sha256, "license": record.license,
            "categories": list(record.categories),
        })
    if json_path is not None:
        write_json(entries, json_path)
        if json_path != STDOUT:
            announce(json_path)
        return
    rows = sorted((_list_row(entry) for entry in entries), key=lambda row: GROUPS.index(row[1]))  # stable
    print_table("segcli checkpoints", LIST_COLUMNS, rows)


WEIGHTS_JSON_KEYS = ("name", "model", "on_disk", "sha256")  # how segcli knows its own --json listing
# the checkpoints segcli trained on its synthetic scenes (shipped), then the published ones
GROUPS = ("synthetic scenes", "published")
LIST_COLUMNS = (Column("name", keep_whole=True), Column("group"), Column("model"), Column("dataset"),
                Column("classes", numeric=True), Column("mIoU", numeric=True), Column("mIoU on"), Column("file"))


def _list_row(entry: dict) -> list[str]:
    from segcli.palettes import SYNTH_DATASET

    miou = entry["miou"]
    where = entry["on_disk"] or ("not downloaded" if entry["url"] else "no public download")
    group = GROUPS[0] if entry["dataset"] == SYNTH_DATASET else GROUPS[1]
    return [entry["name"], group, entry["model"], entry["dataset"], str(entry["classes"]),
            f"{miou:.3f}" if isinstance(miou, (int, float)) else "-",  # a fraction, as the README writes mIoU
            entry["miou_on"] if isinstance(miou, (int, float)) else "-", where]


@weights.command("pull")
@click.argument("name")
@click.option("--force", is_flag=True, help="Download again even if a copy is on disk.")
def pull(name: str, force: bool) -> None:
    """Download checkpoint NAME into segcli's cache."""
    from segcli.checkpoints.record import SOURCE_DOWNLOAD
    from segcli.checkpoints.store import pull_checkpoint

    from segcli.atomic import Terminated

    try:
        resolved = pull_checkpoint(name, force=force)
    except KeyboardInterrupt as exc:
        stopped = "Terminated" if isinstance(exc, Terminated) else "Interrupted"
        click.echo(f"{stopped}: {name} was not saved (the partial download was removed)", err=True)
        raise SystemExit(exc.exit_code if isinstance(exc, Terminated) else 130) from None
    if resolved.source != SOURCE_DOWNLOAD:
        click.echo(f"{name} is already on disk: {resolved.path} (use --force to download again)")
        return
    click.echo(f"saved {resolved.path}")
    if resolved.record.sha256 is None:
        from segcli.checkpoints.download import sha256_of

        click.echo(f"no checksum is published for {name}; this file's SHA-256 is {sha256_of(resolved.path)}")


@weights.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Name to use with --weights.")
@zoo_model_option(required=True, help="Zoo model it loads into (names: `segcli models`).")
@click.option("--dataset", default=None, help="Dataset it was trained on (shown by `weights list`).")
@click.option("--classes", default=None, help="Class names in label order, comma separated.")
@click.option("--classes-from", type=click.Choice(list(shipped_class_sets())), default=None,
              help="Use a class set of the shipped manifest: its class names and palette.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None, metavar="LAYOUT",
              help=f"State-dict layout, one of: {', '.join(LAYOUTS)} (detected when left out).")
def add(path: str, name: str, model: str, dataset: str | None, classes: str | None, classes_from: str | None,
        layout: str | None) -> None:
    """Copy the checkpoint at PATH into segcli's cache and record it."""
    from segcli.checkpoints.store import add_checkpoint_file, is_valid_name

    if classes and classes_from:
        raise click.UsageError("give --classes or --classes-from, not both")
    if not is_valid_name(name):
        raise click.BadParameter(f"{name!r}: a checkpoint name may only use letters, digits, '.', '_' and '-'",
                                 param_hint="--name")
    categories, palette = None, None
    if classes:
        categories = tuple(part.strip() for part in classes.split(","))
        if any(not part for part in categories):
            raise click.BadParameter("class names must not be empty", param_hint="--classes")
    elif classes_from:
        class_set = shipped_class_sets()[classes_from]
        categories, palette = tuple(class_set["names"]), class_set["palette"]
    resolved = add_checkpoint_file(path, name, model, dataset=dataset, categories=categories, palette=palette,
                                   layout=layout)
    record = resolved.record
    click.echo(f"added {record.name} ({record.model}, {record.num_classes} classes, layout {record.layout}) "
               f"-> {resolved.path}")
    click.echo(f"sha256 {record.sha256}; use it with --weights {record.name}")


@weights.command("verify")
@click.argument("names", nargs=-1)
def verify(names: tuple[str, ...]) -> None:
    """Hash every checkpoint file on disk against its record (all records, or NAMES)."""
    from segcli.checkpoints.store import verify_checkpoints
    from segcli.errors import ChecksumMismatchError

    checks = verify_checkpoints(list(names))
    for check in checks:
        if check.path is None:
            if names:
                click.echo(f"{check.record.name}: not on disk")
            continue
        detail = f" (got {check.sha256}, recorded {check.record.sha256})" if check.status == "mismatch" else ""
        click.echo(f"{check.record.name}: {check.status} {check.path}{detail}")
    mismatched = [check for check in checks if check.status == "mismatch"]
    if mismatched:
        listed = ", ".join(f"{check.path} ({check.record.name})" for check in mismatched)
        raise ChecksumMismatchError(f"{len(mismatched)} file(s) do not match their recorded SHA-256: {listed}; "
                                    f"delete and pull or add them again")
    if not any(check.path for check in checks):
        click.echo("no checkpoint files on disk to verify")
