"""`segcli export` as a function: checkpoint -> verified ONNX or TorchScript file, written atomically.

The file appears at `out` only once it has passed verification (unless verification is turned
off); a failed export leaves whatever was at `out` untouched.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from segcli.atomic import atomic_write_json, claimed_folder, create_temporary, terminate_as_interrupt
from segcli.checkpoints.record import CheckpointRecord
from segcli.errors import OutputError, SegcliError
from segcli.export.graph import SegmentationGraph
from segcli.export.metadata import graph_metadata
from segcli.export.onnx_format import DEFAULT_OPSET, check_opset, require_onnx
from segcli.export.verify import VerificationReport, check_shapes, reference_name, run_checks, scenes

FORMATS = ("onnx", "torchscript")
DEFAULT_SIZE = (512, 512)


class ExportError(SegcliError):
    """An export that failed, or a graph that does not give segcli's labels."""


@dataclass(frozen=True)
class ExportSettings:
    format: str = "onnx"                          # one of FORMATS
    size: tuple[int, int] = DEFAULT_SIZE          # (height, width) traced; the only size without `dynamic`
    dynamic: bool = False                         # free batch, height and width (ONNX; TorchScript always is)
    opset: int = DEFAULT_OPSET                    # ONNX opset
    exporter: str = "torchscript"                 # ONNX exporter: "torchscript" or "dynamo"
    verify: bool = True
    overwrite: bool = False


@dataclass
class ExportResult:
    path: Path
    record: CheckpointRecord
    verification: VerificationReport | None
    report_path: Path
    seconds: float


def verification_report_path(out: Path) -> Path:
    """Where the verification figures go: `NAME.verification.json` beside the file."""
    return out.with_name(f"{out.name}.verification.json")


def export_model(model: nn.Module, record: CheckpointRecord, out: str | os.PathLike[str],
                 settings: ExportSettings = ExportSettings(),
                 on_step: Callable[[str], None] | None = None) -> ExportResult:
    """Export `model` (loaded with `record`'s checkpoint) to `out`, verified unless told otherwise.

    SIGTERM (like Ctrl-C) removes the temporary file; one a killed export left is removed by the next
    export to the same file.
    """
    started = time.perf_counter()
    out = Path(out).expanduser()
    check_export_target(out, settings)
    check_opset_for(record, settings)
    step = on_step or (lambda message: None)
    report_path = verification_report_path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    with terminate_as_interrupt(), claimed_folder(out, also=[report_path.name]) as removed:
        if removed:
            step(f"removed {len(removed)} temporary file(s) an interrupted export left beside {out.name}")
        verification = _export_to(out, model, record, settings, step)
        result = ExportResult(out, record, verification, report_path, time.perf_counter() - started)
        atomic_write_json(report_path, _report_json(result, settings))
    return result


def _export_to(out: Path, model: nn.Module, record: CheckpointRecord, settings: ExportSettings,
               step: Callable[[str], None]) -> VerificationReport | None:
    """Export into a temporary beside `out`, verify it, rename it over `out`; the temporary never outlives this."""
    graph = SegmentationGraph(model.eval().float().to("cpu", memory_format=torch.contiguous_format),
                              record.preprocessing)
    example = torch.from_numpy(scenes(1, *settings.size, first_index=0))
    handle, temporary = create_temporary(out)
    os.close(handle)
    try:
        step(f"exporting {record.model} ({record.name}) as {settings.format} at {settings.size[0]}x{settings.size[1]}"
             f"{', dynamic batch and size' if settings.dynamic or settings.format == 'torchscript' else ''}")
        write_final, verification = _write_and_verify(graph, example, Path(temporary), record, settings, step,
                                                      out.stem)
        if verification is not None and not verification.passed:
            raise ExportError("the exported graph does not give segcli's labels, so it was not written:\n"
                              + "\n".join(verification.lines()))
        write_final(json.dumps(verification.to_dict() if verification else "not run"))
        os.replace(temporary, out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
    return verification


def check_export_target(out: Path, settings: ExportSettings) -> None:
    """What can be checked before the model loads: the format, `out` (a folder? there already?), onnx installed."""
    if settings.format not in FORMATS:
        raise ExportError(f"unknown format {settings.format!r}: use one of {', '.join(FORMATS)}")
    if out.is_dir():
        raise OutputError(f"{out} is a folder; give a file name, e.g. {out / 'model.onnx'}")
    if out.exists() and not settings.overwrite:
        raise OutputError(f"{out} exists", hint="pass --overwrite to replace it")
    if settings.format == "onnx":
        require_onnx()


def check_opset_for(record: CheckpointRecord, settings: ExportSettings) -> None:
    """The opset against the exporter and the checkpoint's preprocessing (checked before the model loads)."""
    if settings.format == "onnx":
        check_opset(settings.opset, settings.exporter, bool(record.preprocessing.resize_shorter))


def _write_and_verify(graph: SegmentationGraph, example: torch.Tensor, temporary: Path, record: CheckpointRecord,
                      settings: ExportSettings, step: Callable[[str], None], out_stem: str = "model"):
    """Export to `temporary`, verify it; returns (a function that writes the final metadata, the report)."""
    from segcli.export import verify

    dynamic = settings.dynamic or settings.format == "torchscript"
    shape: list[int | str] = ["batch", "height", "width", 3] if dynamic else [1, *settings.size, 3]
    metadata = graph_metadata(record, shape, _exporter_name(settings))
    report = VerificationReport(settings.format, "", verify.reference_name()) if settings.verify else None
    if settings.format == "onnx":
        from segcli.export import onnx_format

        _guarded(lambda: onnx_format.export_onnx(graph, example, temporary, dynamic=settings.dynamic,
                                                 opset=settings.opset, exporter=settings.exporter))
        if settings.dynamic:
            onnx_format.fix_class_axis(temporary, record.num_classes)
        if report is not None:
            step("verifying with onnx.checker and onnxruntime")
            report.checker = _onnx_checker(temporary)
            run_graph, report.runtime = verify.onnx_runner(str(temporary))
            run_checks(run_graph, graph.model, record, check_shapes(settings.size, settings.dynamic), report)

        def write_final(verification: str) -> None:
            onnx_format.write_onnx_metadata(temporary, metadata | {"verification": verification})
        return write_final, report

    from segcli.export import torchscript_format

    traced = _guarded(lambda: torchscript_format.trace_graph(graph, example))
    name = out_stem  # the archive's folder: the final file's name, not the temporary one's
    torchscript_format.save_torchscript(traced, temporary, metadata, archive_name=name)
    if report is not None:
        step("verifying the saved module")
        loaded, _ = torchscript_format.load_torchscript(temporary)
        run_graph, report.runtime = verify.torchscript_runner(loaded)
        run_checks(run_graph, graph.model, record, check_shapes(settings.size, True), report)

    def write_final(verification: str) -> None:
        torchscript_format.save_torchscript(traced, temporary, metadata | {"verification": verification},
                                            archive_name=name)
    return write_final, report


def _guarded(action):
    """Run an exporter; its failures (unsupported operators and the like) become one ExportError line."""
    try:
        return action()
    except SegcliError:
        raise
    except Exception as exc:  # exporters raise many types; the user needs the first line, not a traceback
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(f"the exporter failed: {type(exc).__name__}: {first_line[:300]}") from None


def _onnx_checker(path: Path) -> str:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker refused the exported graph: {str(exc).splitlines()[0]}") from None
    return f"onnx.checker (full check, onnx {onnx.__version__}): valid"


def _exporter_name(settings: ExportSettings) -> str:
    if settings.format == "torchscript":
        return f"torch.jit.trace (torch {torch.__version__})"
    return f"torch.onnx.export dynamo={settings.exporter == 'dynamo'} (torch {torch.__version__}), " \
           f"opset {settings.opset}"


def _report_json(result: ExportResult, settings: ExportSettings) -> dict:
    from segcli import __version__

    return {
        "format": "segcli-export", "version": 1, "file": result.path.name, "segcli_version": __version__,
        "model": result.record.model, "checkpoint": result.record.name,
        "settings": {"format": settings.format, "size": list(settings.size), "dynamic": settings.dynamic,
                     "opset": settings.opset if settings.format == "onnx" else None,
                     "exporter": _exporter_name(settings)},
        "verification": result.verification.to_dict() if result.verification else None,
        "seconds": round(result.seconds, 2),
    }
