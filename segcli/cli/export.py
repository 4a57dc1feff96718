"""`segcli export`: a checkpoint as a self-contained ONNX graph or TorchScript module, verified."""

from __future__ import annotations

from pathlib import Path

import click

from segcli.cli.options import download_option, size_callback, overwrite_option, quiet_option, weights_option, zoo_model_option

FORMAT_BY_SUFFIX = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}


def _format_for(out: Path, given: str | None) -> str:
    if given is not None:
        return given
    fmt = FORMAT_BY_SUFFIX.get(out.suffix.lower())
    if fmt is None:
        raise click.UsageError(f"cannot tell the format from {out.name!r}: pass --format onnx|torchscript "
                               f"(or name the file .onnx / .pt)")
    return fmt


@click.command("export")
@zoo_model_option(help="Zoo model [default: the one --weights names]. Without --weights: its default checkpoint.")
@weights_option
@click.option("--format", "fmt", type=click.Choice(("onnx", "torchscript")), default=None,
              help="onnx or torchscript [default: from --out's suffix: .onnx, .pt/.ts].")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write (a NAME.verification.json goes beside it).")
@click.option("--size", default="512x512", show_default=True, callback=size_callback(min_side=32), metavar="N|HxW",
              help="Input size the graph is traced at; the only size a non-dynamic ONNX graph takes.")
@click.option("--dynamic", is_flag=True,
              help="ONNX: free batch, height and width (checked at two sizes and two batch sizes). "
                   "TorchScript modules always are.")
@click.option("--opset", type=int, default=None, help="ONNX opset [default: 18; 14-20, or 18-23 with --exporter dynamo].")
@click.option("--exporter", type=click.Choice(("torchscript", "dynamo")), default=None,
              help="ONNX exporter: torchscript (torch.onnx dynamo=False; default, seconds) or dynamo "
                   "(torch.export + onnxscript; much slower).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check the file against segcli's fp32 forward (labels must agree on >= 99.5% of pixels).")
@overwrite_option("Replace an existing --out file.")
@download_option
@quiet_option()
def export(model, weights, fmt, out, size, dynamic, opset, exporter, verify, overwrite, download, quiet) -> None:
    """Export a checkpoint as ONNX (uint8 RGB NHWC `image` in; `labels` and `logits` out; the checkpoint's
    preprocessing inside) or TorchScript, and prove it gives segcli's labels.

    \b
    Examples:
      segcli export --model deeplabv3p --out deeplabv3p.onnx
      segcli export --model lraspp --out lraspp.onnx --dynamic
      segcli export --weights fcn8s-synth --out fcn8s.pt
      segcli predict img.jpg --model lraspp --weights lraspp.onnx
    """
    fmt = _format_for(out, fmt)
    if fmt == "torchscript" and (dynamic or opset is not None or exporter is not None):
        raise click.UsageError("--dynamic, --opset and --exporter are for --format onnx "
                               "(TorchScript modules take any batch and size)")
    from rich.console import Console
    from rich.markup import escape

    from segcli.checkpoints.loading import load_checkpoint_model
    from segcli.checkpoints.resolve import resolve_checkpoint
    from segcli.export.exporter import ExportSettings, export_model
    from segcli.export.onnx_format import DEFAULT_OPSET
    from segcli.text import printable

    console = Console(stderr=True, quiet=quiet, soft_wrap=True)
    resolved = resolve_checkpoint(model, weights, allow_download=download)
    if resolved.path.suffix.lower() == ".onnx":
        raise click.BadParameter(f"{resolved.path.name} is already an exported graph: export from the checkpoint "
                                 f"it was made from ({resolved.record.name})", param_hint="--weights")
    console.print(f"[bold]{resolved.record.model}[/] {escape(printable(resolved.describe()))}", highlight=False)
    settings = ExportSettings(format=fmt, size=size, dynamic=dynamic, opset=opset or DEFAULT_OPSET,
                              exporter=exporter or "torchscript", verify=verify, overwrite=overwrite)
    result = export_model(load_checkpoint_model(resolved), resolved.record, out, settings,
                          on_step=lambda message: console.print(message, highlight=False))
    for line in result.verification.lines() if result.verification else ["verification skipped (--no-verify)"]:
        console.print(line, highlight=False, markup=False)
    megabytes = result.path.stat().st_size / 1e6
    click.echo(f"wrote {result.path} ({megabytes:.1f} MB) and {result.report_path.name} in {result.seconds:.1f} s",
               err=True)
