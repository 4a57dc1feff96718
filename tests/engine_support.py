"""Engines over in-memory test networks, built the one way segcli builds them (`SegmentationEngine.from_checkpoint`)."""

from __future__ import annotations

from segcli.engine import SegmentationEngine
from segcli.loaded_model import LoadedModel
from segcli.inference_options import InferenceOptions


def engine_of(network, record, device: str = "cpu", precision: str = "fp32", channels_last: bool = False,
              **options) -> SegmentationEngine:
    """`network` with `record` on the CPU in fp32, contiguous unless asked; `options`: InferenceOptions fields."""
    return SegmentationEngine.from_checkpoint(
        LoadedModel(network, record), device=device,
        options=InferenceOptions(precision=precision, channels_last=channels_last, **options))
