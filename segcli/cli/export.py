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

    from segcli.atomic import Terminated
    from segcli.checkpoints.loading import load_checkpoint_model
    from segcli.export.exporter import ExportSettings, export_model
    from segcli.export.onnx_format import DEFAULT_OPSET
    from segcli.text import printable

    console = Console(stderr=True, quiet=quiet, soft_wrap=True)
    settings = ExportSettings(format=fmt, size=size, dynamic=dynamic, opset=opset or DEFAULT_OPSET,
                              exporter=exporter or "torchscript", verify=verify, overwrite=overwrite)
    resolved = _checked_request(model, weights, out.expanduser(), settings, download)  # all before the model loads
    console.print(f"[bold]{resolved.record.model}[/] {escape(printable(resolved.describe()))}", highlight=False)
    try:
        result = export_model(load_checkpoint_model(resolved), resolved.record, out, settings,
                              on_step=lambda message: console.print(message, highlight=False))
    except KeyboardInterrupt as exc:
        stopped = "Terminated" if isinstance(exc, Terminated) else "Interrupted"
        click.echo(f"{stopped}: {out} was not written (its temporary file was removed)", err=True)
        raise SystemExit(exc.exit_code if isinstance(exc, Terminated) else 130) from None
    for line in result.verification.lines() if result.verification else ["verification skipped (--no-verify)"]:
        console.print(line, highlight=False, markup=False)
    megabytes = result.path.stat().st_size / 1e6
    click.echo(f"wrote {result.path} ({megabytes:.1f} MB) and {result.report_path.name} in {result.seconds:.1f} s",
               err=True)


def _checked_request(model, weights, out: Path, settings, download: bool):
    """Every refusal that needs no model: --out (never the checkpoint, also through a link; a folder to write in;
    there already), the onnx package, the checkpoint (not an exported graph) and the opset. The resolved checkpoint."""
    from segcli.checkpoints.resolve import resolve_checkpoint
    from segcli.cli.report_files import check_reports, checkpoint_files
    from segcli.export.exporter import check_export_target, check_opset_for, verification_report_path
    from segcli.outputs.report_file import json_report, same_file

    export_report = json_report(lambda document: isinstance(document, dict)
                                and document.get("format") == "segcli-export")
    # --overwrite decides about an existing --out below; the guard refuses inputs, folders, links and bad parents
    check_reports([("--out", out, lambda path: True)], checkpoint_files(model, weights), overwrite=True)
    check_reports([("--out", verification_report_path(out), export_report)], checkpoint_files(model, weights),
                  overwrite=settings.overwrite)
    check_export_target(out, settings)
    resolved = resolve_checkpoint(model, weights, allow_download=download)
    if same_file(resolved.path, out):
        raise click.UsageError(f"--out {out} is the checkpoint being exported: choose another --out")
    if resolved.path.suffix.lower() == ".onnx":
        raise click.BadParameter(f"{resolved.path.name} is already an exported graph: export from the checkpoint "
                                 f"it was made from ({resolved.record.name})", param_hint="--weights")
    check_opset_for(resolved.record, settings)
    return resolved
