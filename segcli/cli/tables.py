"""Listings that survive pipes and narrow terminals.

On a terminal: a rich table whose cells wrap (fold) and are never cut with an ellipsis; on a
terminal too narrow for that table, one block per row (`name`, then `header: value` lines), long
values left whole for the terminal to wrap. When stdout is not a terminal (`| cat`, `> file`, a test runner): plain tab-separated rows under one
header line, whole values, no box drawing, no wrapping at any width. `--json` gives the same data
as JSON (`--json` alone: on stdout; `--json PATH`: into a file).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click

STDOUT = "-"

json_option = click.option(
    "--json", "json_path", is_flag=False, flag_value=STDOUT, default=None, metavar="[PATH]",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Print the results as JSON (or, with PATH, write them there).")


@dataclass(frozen=True)
class Column:
    header: str
    numeric: bool = False   # right-aligned on a terminal
    keep_whole: bool = False  # widen to its longest value rather than wrap (names people copy)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _plain_cell(value: str) -> str:
    return " ".join(str(value).split()) or "-"  # one field per cell: no tabs or newlines inside


MIN_FOLDED_WIDTH = 12  # narrowest useful width of a column whose cells fold


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], caption: str | None = None,
                terminal: bool | None = None) -> None:
    """Rows as a rich table on a terminal, as tab-separated lines (header first) otherwise."""
    if not (stdout_is_terminal() if terminal is None else terminal):
        click.echo("\t".join(column.header for column in columns))
        for row in rows:
            click.echo("\t".join(_plain_cell(cell) for cell in row))
        return
    widths = [max([len(column.header), *(len(str(row[index])) for row in rows)]) for index, column in enumerate(columns)]
    # a folded column is never narrower than its longest word: names wrap between words, never inside one
    words = [max([len(word) for row in rows for word in str(row[index]).split()] + [len(column.header)])
             for index, column in enumerate(columns)]
    minimum = [width if column.keep_whole else max(min(width, MIN_FOLDED_WIDTH), word)
               for width, word, column in zip(widths, words, columns)]
    narrowest = sum(minimum) + 3 * len(columns) + 1
    terminal_width = shutil.get_terminal_size().columns
    if narrowest > terminal_width:
        _print_blocks(title, columns, rows, terminal_width)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), caption=escape(caption) if caption else None)
    for width, least, column in zip(widths, minimum, columns):
        table.add_column(column.header, justify="right" if column.numeric else "left", overflow="fold",
                         min_width=width if column.keep_whole else least)
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))  # "[val]" is text, not rich markup
    Console().print(table)


def _print_blocks(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> None:
    """One block per row, for terminals narrower than the table: `header: value` pairs packed into
    lines, wrapped between pairs; a pair wider than the terminal wraps between its words (never
    inside a name), and a one-word value wider than that (a path) is left whole for the terminal."""
    import textwrap

    click.secho(title, bold=True)
    for row in rows:
        click.echo("")
        click.secho(str(row[0]), bold=True)
        line = ""
        for column, cell in zip(columns[1:], row[1:]):
            pair = f"{column.header}: {cell}"
            if line and len(line) + len(pair) + 2 > width:
                click.echo(line)
                line = ""
            if not line and len(pair) + 2 > width and " " in str(cell).strip():
                wrapped = textwrap.wrap(pair, width, initial_indent="  ", subsequent_indent="    ",
                                        break_long_words=False, break_on_hyphens=False)
                click.echo("\n".join(wrapped))
                continue
            line = f"{line}; {pair}" if line else f"  {pair}"
        if line:
            click.echo(line)


def write_json(obj: Any, json_path: str) -> None:
    """`obj` as indented JSON on stdout (`json_path` "-") or atomically into a file."""
    if json_path == STDOUT:
        click.echo(json.dumps(obj, indent=2, ensure_ascii=False))
        return
    from segcli.atomic import atomic_write_json

    from segcli.errors import OutputError

    path = Path(json_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from None
    atomic_write_json(path, obj)  # the caller says "wrote PATH" (segcli/cli/report_files.py: announce)
