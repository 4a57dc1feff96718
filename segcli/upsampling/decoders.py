"""The shipped decoder checkpoints: per method, one `UpsamplingDecoder` per training seed.

Files are `upsampling-<method>-seed<k>-synth.safetensors` in `weights/upsampling/`, float16,
with a record (architecture, method, widths, seed) and the training settings in their metadata.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from segcli.checkpoints.record import IMAGENET_PREPROCESSING, CheckpointRecord
from segcli.errors import CheckpointError
from segcli.upsampling.network import ARCHITECTURE, DEFAULT_WIDTHS, UpsamplingDecoder

TRAIN_HINT = "train them with training/upsampling/train_all.sh, pass --decoders DIR, or use --model NAME"


def shipped_decoders_dir() -> Path:
    """`weights/upsampling/` in the repository."""
    from segcli.checkpoints.manifest import shipped_weights_dir

    return shipped_weights_dir() / "upsampling"


def decoder_filename(method: str, seed: int) -> str:
    return f"upsampling-{method}-seed{seed}-synth.safetensors"


def decoder_record(method: str, categories: tuple[str, ...], seed: int, widths: tuple[int, ...] = DEFAULT_WIDTHS,
                   metrics: dict[str, Any] | None = None) -> CheckpointRecord:
    """The record stored in a decoder file's metadata."""
    return CheckpointRecord(
        name=f"upsampling-{method}-seed{seed}-synth",
        model=ARCHITECTURE,
        dataset="segcli-synth",
        categories=tuple(categories),
        filename=decoder_filename(method, seed),
        preprocessing=IMAGENET_PREPROCESSING,
        model_kwargs=(("method", method), ("seed", seed), ("widths", list(widths))),
        metrics=tuple(sorted((metrics or {}).items())),
        license="MIT (segcli)",
        notes="compare-upsampling decoder on the frozen deeplabv3p-mobilenet-synth encoder; "
              "trained by training/upsampling/train_all.sh",
    )


def save_decoder(path: str | Path, net: UpsamplingDecoder, categories: tuple[str, ...], seed: int,
                 metrics: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> Path:
    """Write a float16 safetensors file with the record (and training settings) in its metadata."""
    from segcli.checkpoints.saving import save_segcli_checkpoint

    record = decoder_record(net.method, categories, seed, net.widths, metrics)
    return save_segcli_checkpoint(path, net, record, extra={"training": training or {}}, half=True)


def load_decoder(path: str | Path) -> tuple[UpsamplingDecoder, CheckpointRecord]:
    """Build the decoder a file describes and load it strictly (float32, eval mode)."""
    from segcli.checkpoints.loading import load_weights, read_segcli_metadata, read_state_dict

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"decoder checkpoint {path} does not exist", hint=TRAIN_HINT)
    metadata = read_segcli_metadata(path)
    if metadata is None or metadata.record.model != ARCHITECTURE:
        raise CheckpointError(f"{path} is not a compare-upsampling decoder checkpoint (no {ARCHITECTURE} record)")
    record = metadata.record
    kwargs = record.kwargs
    net = UpsamplingDecoder(record.num_classes, kwargs["method"], tuple(kwargs.get("widths", DEFAULT_WIDTHS)))
    load_weights(net, read_state_dict(path, layout="segcli"), path.name, ARCHITECTURE)
    return net.eval(), record


def find_decoders(folder: str | Path, methods: tuple[str, ...]) -> dict[str, list[Path]]:
    """Each method's decoder files in `folder` (one per seed, by seed); a method without any is an error."""
    folder = Path(folder)
    found: dict[str, list[Path]] = {}
    for method in methods:
        pattern = re.compile(rf"upsampling-{re.escape(method)}-seed(\d+)-synth\.safetensors")
        matches = [(int(m.group(1)), path) for path in folder.glob("*.safetensors")
                   if (m := pattern.fullmatch(path.name))]
        found[method] = [path for _, path in sorted(matches)]
    missing = [method for method, paths in found.items() if not paths]
    if missing:
        raise CheckpointError(f"no decoder checkpoint for {', '.join(missing)} in {folder} "
                              f"(upsampling-<method>-seed<k>-synth.safetensors)", hint=TRAIN_HINT)
    return found
