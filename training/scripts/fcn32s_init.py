"""The starting point of the shipped FCN-32s: FCN-8s's trained VGG trunk without its dead top.

FCN-32s started from all of fcn8s-synth stayed at the all-background answer, on a CPU and again for
6,533 iterations on an H200: fcn8s-synth's conv5_3 has no live ReLU left (0 of 64 channels fire on
synth scenes, fc6 1 of 512; FCN-8s predicts through its pool3/pool4 skips, and its coarse branch alone
scores 0.006 mIoU), so no gradient reaches the layers FCN-32s depends on. From scratch at lr 1e-3
the same layers die within the first iterations. This script copies conv1_1 ... conv5_2 from
fcn8s-synth and leaves conv5_3, fc6, fc7, score_fr and upscore as built (Kaiming / bilinear), and
training then runs at lr 3e-4 with a warm-up, at which they stay alive (63/64 conv5_3 channels after
300 iterations).

Usage: python training/scripts/fcn32s_init.py OUT.safetensors
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.engine import SegmentationEngine
from segcli.inference_options import InferenceOptions
from segcli.models import build_model

DEAD_IN_FCN8S = ("conv5_3.", "fc6.", "fc7.", "score_fr.")


def main(out: Path) -> None:
    source = SegmentationEngine.load("fcn8s", weights="fcn8s-synth", device="cpu",
                                    options=InferenceOptions(precision="fp32"))
    torch.manual_seed(0)
    kwargs = dict(source.record.model_kwargs)
    model = build_model("fcn32s", source.record.num_classes, **kwargs)
    own = model.state_dict()
    kept = {key: value for key, value in source.model.state_dict().items()
            if key in own and own[key].shape == value.shape and not key.startswith(DEAD_IN_FCN8S)}
    model.load_state_dict(kept, strict=False)
    record = dataclasses.replace(source.record, name=out.stem, model="fcn32s", filename=out.name,
                                 notes="fcn8s-synth's conv1_1..conv5_2, the rest as built (training/scripts/fcn32s_init.py)")
    save_segcli_checkpoint(out, model, record)
    print(f"wrote {out}: {len(kept)} tensors from fcn8s-synth, {len(own) - len(kept)} as built")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
