"""The shipped decoder checkpoints: one small `UpsamplingNet` per method, trained identically on synth data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segcli.checkpoints.record import IMAGENET_PREPROCESSING, CheckpointRecord
from segcli.errors import CheckpointError
from segcli.upsampling.network import ARCHITECTURE, DEFAULT_WIDTHS, UpsamplingNet


def shipped_decoders_dir() -> Path:
    """`weights/upsampling/` in the repository."""
    from segcli.checkpoints.manifest import shipped_weights_dir

    return shipped_weights_dir() / "upsampling"


def decoder_filename(method: str) -> str:
    return f"upsampling-{method}-synth.safetensors"


def decoder_record(method: str, categories: tuple[str, ...], widths: tuple[int, ...] = DEFAULT_WIDTHS,
                   metrics: dict[str, Any] | None = None) -> CheckpointRecord:
    """The record stored in a decoder file's metadata."""
    return CheckpointRecord(
        name=f"upsampling-{method}-synth",
        model=ARCHITECTURE,
        dataset="segcli-synth",
        categories=tuple(categories),
        filename=decoder_filename(method),
        preprocessing=IMAGENET_PREPROCESSING,
        model_kwargs=(("method", method), ("widths", list(widths))),
        metrics=tuple(sorted((metrics or {}).items())),
        license="MIT (segcli)",
        notes="compare-upsampling decoder; trained by training/upsampling/train_all.sh",
    )


def save_decoder(path: str | Path, net: UpsamplingNet, categories: tuple[str, ...],
                 metrics: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> Path:
    """Write a float16 safetensors file with the record (and training settings) in its metadata."""
    from segcli.checkpoints.loading import save_segcli_checkpoint

    record = decoder_record(net.method, categories, net.widths, metrics)
    return save_segcli_checkpoint(path, net, record, extra={"training": training or {}}, half=True)


def load_decoder(path: str | Path) -> tuple[UpsamplingNet, CheckpointRecord]:
    """Build the net a decoder file describes and load it strictly (float32, eval mode)."""
    from segcli.checkpoints.loading import load_weights, read_segcli_metadata, read_state_dict

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"decoder checkpoint {path} does not exist; train them with "
                              f"training/upsampling/train_all.sh or pass --decoders DIR")
    metadata = read_segcli_metadata(path)
    if metadata is None or metadata.record.model != ARCHITECTURE:
        raise CheckpointError(f"{path} is not a compare-upsampling decoder checkpoint (no {ARCHITECTURE} record)")
    record = metadata.record
    kwargs = record.kwargs
    net = UpsamplingNet(record.num_classes, kwargs["method"], tuple(kwargs.get("widths", DEFAULT_WIDTHS)))
    load_weights(net, read_state_dict(path, layout="segcli"), path.name, ARCHITECTURE)
    return net.eval(), record


def find_decoders(folder: str | Path, methods: tuple[str, ...]) -> dict[str, Path]:
    """The decoder file of each method in `folder`; a missing one is an error naming the file."""
    folder = Path(folder)
    paths = {method: folder / decoder_filename(method) for method in methods}
    missing = [path.name for path in paths.values() if not path.is_file()]
    if missing:
        raise CheckpointError(f"no decoder checkpoint {', '.join(missing)} in {folder}; train them with "
                              f"training/upsampling/train_all.sh, pass --decoders DIR, or use --model NAME")
    return paths
