"""The checkpoints segcli ships are real: each reaches its recorded held-out mIoU on a fresh draw.

The manifest records each shipped checkpoint's mIoU on 300 held-out scenes (synth seed 2; the
training data used seed 1). Here the first scenes of that same held-out draw are generated anew
and segmented through the engine, and the mIoU must land near the recorded figure and above what
an all-background prediction scores.
"""

from __future__ import annotations

import numpy as np
import pytest

from segcli.checkpoints.manifest import load_manifest, shipped_weights_dir
from segcli.data.synth import write_synth_dataset
from segcli.data.voc import load_mask, read_split
from segcli.engine import SegmentationEngine
from segcli.inference_options import InferenceOptions
from segcli.evaluation import evaluate_folder
from segcli.metrics import ConfusionMatrix

pytestmark = pytest.mark.slow

HELD_OUT_SEED = 2   # training/scripts/train_shipped.sh: held-out test draw
SCENES = 120        # a subset of the 300 the manifest figure was measured on
TOLERANCE = 0.06    # mIoU of 120 scenes against 300: spread measured at <= 0.024 (the first 40 alone: up to 0.062)
# Undertrained on 2 CPU cores (README, "Shipped checkpoints"): at or barely above an all-background
# prediction. They must still reproduce their recorded figure and must not fall below that baseline.
NEAR_TRIVIAL: set[str] = set()

SHIPPED = sorted(
    (record for record in load_manifest().values()
     if record.layout == "segcli" and (shipped_weights_dir() / record.filename).is_file()),
    key=lambda record: record.name,
)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held-out")
    write_synth_dataset(folder, n=SCENES, seed=HELD_OUT_SEED, size=(128, 128), val_fraction=1.0)
    return folder


def test_the_default_deeplabv3p_checkpoint_is_shipped():
    assert "deeplabv3p-mobilenet-synth" in {record.name for record in SHIPPED}


@pytest.mark.parametrize("record", SHIPPED, ids=lambda record: record.name)
def test_shipped_checkpoint_reaches_its_recorded_miou(record, held_out):
    engine = SegmentationEngine.load(record.model, weights=record.name, device="cpu",
                                     options=InferenceOptions(precision="fp32"))
    assert engine.checkpoint.source == "shipped"
    measured = evaluate_folder(engine, held_out, "val")["miou"]
    recorded = record.metric_dict["miou"]
    assert abs(measured - recorded) <= TOLERANCE, (record.name, measured, recorded)
    background_only = ConfusionMatrix(record.num_classes)
    for _, mask_path in read_split(held_out, "val"):
        mask = load_mask(mask_path)
        background_only.update(np.zeros_like(mask), mask)
    trivial = background_only.to_dict()["miou"]
    if record.name in NEAR_TRIVIAL:
        assert measured >= trivial - 0.01, (record.name, measured, trivial)
    else:
        assert measured > trivial + 0.05, (record.name, measured, trivial)
