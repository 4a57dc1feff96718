"""Where a run starts: the record its checkpoint will carry, and `--weights` (fine-tuning, or the
tensors a checkpoint of another model shares with this one)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from segcli.checkpoints.record import IMAGENET_PREPROCESSING, CheckpointRecord, Preprocessing
from segcli.errors import CheckpointError
from segcli.training.config import TrainConfig


def build_record(config: TrainConfig, categories: tuple[str, ...], dataset: str,
                 preprocessing: Preprocessing = IMAGENET_PREPROCESSING) -> CheckpointRecord:
    from segcli.models import canonical_name
    from segcli.text import printable  # a record's name is one printable line (CheckpointRecord.from_dict)

    model = canonical_name(config.model)
    return CheckpointRecord(
        name=printable(Path(config.out).name.split(".")[0]), model=model, dataset=dataset, categories=categories,
        filename=Path(config.out).name, layout="segcli", palette="voc", preprocessing=preprocessing,
        model_kwargs=tuple(sorted(config.model_kwargs.items())), license="MIT",
        notes="trained by segcli train",
    )


def starting_engine(config: TrainConfig):
    """The `--weights` checkpoint's model, built as the model it was made for (its record's
    preprocessing carries over): fine-tuning when that is `--model`, else an initialisation of the
    tensors both models share (e.g. FCN-32s from an FCN-8s, LR-ASPP from a DeepLab v3 MobileNetV3)."""
    from segcli.engine import SegmentationEngine
    from segcli.inference_options import InferenceOptions

    return SegmentationEngine.load(source_model(config.weights, config.model), weights=config.weights,
                                   device="cpu", options=InferenceOptions(precision="fp32"))


def source_model(weights: str, model: str) -> str:
    """The zoo model a checkpoint was made for: its own record's (a segcli file, a manifest name), else `model`."""
    from segcli.checkpoints.loading import read_checkpoint_file, read_segcli_metadata
    from segcli.checkpoints.saving import TRAINING_RECORD_KEY
    from segcli.checkpoints.manifest import load_manifest

    path = Path(weights)
    if path.is_file():
        metadata = read_segcli_metadata(path)
        if metadata is not None:
            return metadata.record.model
        if path.name.endswith(".state.pt"):
            stored = read_checkpoint_file(path, mmap=True).get(TRAINING_RECORD_KEY)
            if isinstance(stored, dict) and isinstance(stored.get("model"), str):
                return stored["model"]
        return model
    record = load_manifest().get(weights)
    return record.model if record is not None else model


def copy_matching_weights(model: nn.Module, source: nn.Module, weights: str) -> list[str]:
    """Copy every tensor of the same name and shape; returns the keys left as built (e.g. a new head).

    When no name is shared (two layouts of one backbone: FCN's `conv1_1 ... conv5_3` against DeepLab
    v1's `features.0 ... features.28`), the leading tensors that agree in order and shape are copied
    instead: the backbone both start with, up to the first layer where they differ.
    """
    own = model.state_dict()
    theirs = source.state_dict()
    copied = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    if not copied:
        copied = _leading_tensors_in_order(own, theirs)
    if not copied:
        raise CheckpointError(f"weights {weights}: no tensor fits this model; is it a checkpoint of it?")
    model.load_state_dict(copied, strict=False)
    return sorted(set(own) - set(copied))


def _leading_tensors_in_order(own: dict, theirs: dict) -> dict:
    """Target key -> source tensor for the longest run of same-shaped tensors from the start of both."""
    copied = {}
    for (key, mine), other in zip(own.items(), theirs.values()):
        if mine.shape != other.shape or mine.dtype != other.dtype:
            break
        copied[key] = other
    return copied
