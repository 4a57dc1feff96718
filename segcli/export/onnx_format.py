"""Write a `SegmentationGraph` as ONNX, and its metadata (checkpoints/onnx_model.py reads both).

Two exporters: "torchscript" (`torch.onnx.export(..., dynamo=False)`, the default: exports
segcli's models in about a second, where "dynamo" (torch.export + onnxscript) took 51 s for
DeepLabV3+ MobileNet on 2 cores, with the same outputs) and "dynamo". The TorchScript-based one
has no translation for antialiased bilinear resizing (torchvision's resize of the shorter side),
so segcli registers one: ONNX `Resize` (opset 18) with `antialias=1, exclude_outside=1`, which
matches torch's kernel.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from segcli.errors import MissingDependencyError, SegcliError

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 18
OPSET_RANGE = {"torchscript": (14, 20), "dynamo": (18, 23)}  # 14: HardSwish (MobileNetV3); 20: exporter's max
ANTIALIAS_OPSET = 18  # Resize's `antialias` attribute
INSTALL_HINT = 'ONNX export needs onnx and onnxruntime: pip install "segcli[export]" (or pip install onnx onnxruntime)'
INPUT_NAME, OUTPUT_NAMES = "image", ("labels", "logits")
_DYNAMIC_AXES = {"image": {0: "batch", 1: "height", 2: "width"}, "labels": {0: "batch", 1: "height", 2: "width"},
                 "logits": {0: "batch", 2: "height", 3: "width"}}  # the class axis: fixed (fix_class_axis)
_registered = False


def require_onnx(hint: str = INSTALL_HINT) -> None:
    """Raise an install hint when onnx or onnxruntime is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise MissingDependencyError(hint) from None


def check_opset(opset: int, exporter: str, needs_antialias: bool) -> None:
    low, high = OPSET_RANGE[exporter]
    if not low <= opset <= high:
        raise SegcliError(f"opset {opset} is outside what the {exporter} exporter writes for these models "
                          f"({low}-{high})", hint=f"pass --opset {DEFAULT_OPSET}")
    if needs_antialias and opset < ANTIALIAS_OPSET:
        raise SegcliError(f"this checkpoint resizes its input with antialiasing, which ONNX has from opset "
                          f"{ANTIALIAS_OPSET}",
                          hint=f"pass --opset {ANTIALIAS_OPSET} or higher")


def _antialias_resize(g, image, output_size, align_corners, *scales):
    """aten::_upsample_bilinear2d_aa -> ONNX Resize(antialias=1) with sizes (N, C, *output_size)."""
    from torch.onnx import symbolic_helper

    if symbolic_helper._is_packed_list(output_size):
        sides = [g.op("Reshape", g.op("Cast", side, to_i=7), g.op("Constant", value_t=torch.tensor([1])))
                 for side in symbolic_helper._unpack_list(output_size)]
        spatial = g.op("Concat", *sides, axis_i=0)
    else:
        spatial = g.op("Cast", output_size, to_i=7)
    batch_channels = g.op("Slice", g.op("Shape", image), g.op("Constant", value_t=torch.tensor([0])),
                          g.op("Constant", value_t=torch.tensor([2])))
    sizes = g.op("Concat", batch_channels, spatial, axis_i=0)
    no_scales = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    return g.op("Resize", image, no_scales, no_scales, sizes, mode_s="linear",
                coordinate_transformation_mode_s="half_pixel",
                antialias_i=1, exclude_outside_i=1, nearest_mode_s="floor")


def _register_antialias_resize() -> None:
    global _registered
    if not _registered:
        torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", _antialias_resize, ANTIALIAS_OPSET)
        _registered = True


def export_onnx(graph: torch.nn.Module, example: torch.Tensor, path: Path, *, dynamic: bool, opset: int,
                exporter: str) -> None:
    """Write `graph` (traced at `example`) to `path`; batch, height and width free when `dynamic`."""
    names = {"input_names": [INPUT_NAME], "output_names": list(OUTPUT_NAMES), "opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer notes: the verification says what matters
        if exporter == "torchscript":
            _register_antialias_resize()
            torch.onnx.export(graph, (example,), str(path), dynamo=False, do_constant_folding=True,
                              dynamic_axes=_DYNAMIC_AXES if dynamic else None, **names)
        else:
            _export_dynamo(graph, example, path, dynamic, names)


def _export_dynamo(graph: torch.nn.Module, example: torch.Tensor, path: Path, dynamic: bool, names: dict) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise MissingDependencyError("the dynamo exporter needs onnxscript: pip install onnxscript") from None
    from torch.export import Dim

    shapes = ({0: Dim.DYNAMIC, 1: Dim.DYNAMIC, 2: Dim.DYNAMIC},) if dynamic else None
    if dynamic:  # torch.export fixes any dimension that is 1 in the example (a batch-1 graph failed at batch 2)
        example = example.expand(2, -1, -1, -1).contiguous()
    program = torch.onnx.export(graph, (example,), dynamo=True, dynamic_shapes=shapes, verbose=False,
                                external_data=False, **names)
    program.save(str(path))


def fix_class_axis(path: Path, num_classes: int) -> None:
    """Declare the `logits` output's class axis as the class count, in place: the exporter leaves it
    symbolic in a dynamic graph, though it never varies (batch, height and width stay free)."""
    import onnx

    model = onnx.load(str(path))
    for output in model.graph.output:
        if output.name == "logits" and len(output.type.tensor_type.shape.dim) == 4:
            axis = output.type.tensor_type.shape.dim[1]
            axis.Clear()
            axis.dim_value = num_classes
    onnx.save(model, str(path))


def write_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Set metadata_props on the ONNX file at `path`, in place (the caller owns `path`: a temporary file)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
