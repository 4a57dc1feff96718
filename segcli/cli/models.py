"""`segcli models`: the zoo, its aliases and default checkpoints."""

from __future__ import annotations

import click


@click.command("models")
def models() -> None:
    """List the model zoo."""
    from rich.console import Console
    from rich.table import Table

    from segcli.models import ALIASES, MODEL_SPECS

    table = Table(title="segcli model zoo")
    table.add_column("name")
    table.add_column("description")
    for spec in MODEL_SPECS:
        table.add_row(spec.name, spec.description)
    for alias, target in ALIASES.items():
        table.add_row(alias, f"alias of {target}")
    Console().print(table)
