"""`segcli` entry point. Subcommands are imported only when run, so --help/--version skip torch."""

from __future__ import annotations

import importlib
import warnings
from contextlib import contextmanager
from typing import Iterator

import click

from segcli import __version__
from segcli.errors import SegcliError, SegcliWarning, with_hint

# command name -> (module under segcli.cli, attribute, one-line help shown by `segcli --help`)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "predict": ("predict", "predict", "Segment images, folders or globs and write masks, overlays and summaries."),
    "models": ("models", "models", "List the model zoo."),
    "weights": ("weights", "weights", "List, pull, add and verify checkpoints."),
    "data": ("data", "data", "Make datasets (procedural VOC-format scenes)."),
    "train": ("train", "train", "Train or fine-tune a zoo model on a VOC-format folder."),
    "evaluate": ("evaluate", "evaluate", "Measure mIoU and pixel accuracy on a labelled folder."),
    "benchmark": ("benchmark", "benchmark", "Speed, memory, FLOPs and accuracy of models side by side."),
    "export": ("export", "export", "Export a checkpoint as verified ONNX or TorchScript."),
    "compare-upsampling": ("compare_upsampling", "compare_upsampling", "Compare upsampling methods on your images."),
    "serve": ("serve", "serve", "Serve the engine over HTTP (batched) with a web page."),
}


class SegcliClickError(click.ClickException):
    """A SegcliError at the CLI edge: printed as `Error: <message>`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def segcli_warnings_as_lines() -> Iterator[None]:
    """Show each SegcliWarning raised while a command runs as one bold `Warning: ...` line on stderr
    (whatever --quiet says: a warning is not progress), once per message; other warnings as usual."""
    shown: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", SegcliWarning)
        default_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if not issubclass(category, SegcliWarning):
                default_show(message, category, filename, lineno, file, line)
            elif with_hint(message) not in shown:  # a SegcliWarning's hint: what to do on the command line
                shown.add(with_hint(message))
                click.secho(f"Warning: {with_hint(message)}", fg="yellow", bold=True, err=True)

        warnings.showwarning = show
        yield


class LazyGroup(click.Group):
    """A group whose subcommands live in their own modules and load on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        module_name, attribute, _ = SUBCOMMANDS[cmd_name]
        module = importlib.import_module(f"segcli.cli.{module_name}")
        return getattr(module, attribute)

    def invoke(self, ctx: click.Context):
        try:
            with segcli_warnings_as_lines():
                return super().invoke(ctx)
        except SegcliError as exc:
            # one clear line and a non-zero exit, also under CliRunner
            raise SegcliClickError(with_hint(exc), exc.exit_code) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in SUBCOMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="segcli")
def cli() -> None:
    """segcli: semantic segmentation with the FCN and DeepLab families.

    \b
    Examples:
      segcli predict img.jpg --model deeplabv3p --crf
      segcli models
      segcli benchmark
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI (console script and `python -m segcli`)."""
    cli.main(args=argv, prog_name="segcli")
