"""Record the shipped checkpoints in weights/manifest.json: their record, SHA-256 and held-out metrics.

Usage: python training/register_shipped.py   (after training/train_shipped.sh)
Reads weights/<stem>.safetensors (the record travels in the file's metadata) and the held-out
evaluation training/logs/<model>.eval.json written by `segcli evaluate`, then replaces or appends the
record of the same name in the shipped manifest.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from segcli.checkpoints.download import sha256_of
from segcli.checkpoints.loading import read_segcli_metadata
from segcli.checkpoints.manifest import read_manifest_file, shipped_manifest_path, write_manifest_file

ROOT = Path(__file__).resolve().parent.parent
# zoo name used by train_shipped.sh -> file stem in weights/
SHIPPED = {
    "deeplabv3p": "deeplabv3p-mobilenet-synth",
    "lraspp": "lraspp-mobilenet-synth",
    "deeplabv3-mobilenet": "deeplabv3-mobilenet-synth",
    "fcn8s": "fcn8s-synth",
    "fcn32s": "fcn32s-synth",
    "deeplabv1": "deeplabv1-synth",
    "deeplabv2": "deeplabv2-synth",
}
# training stages before the last one (the file's metadata describes only the last)
EARLIER_STAGES = {
    "deeplabv3p": ("3500 iterations from scratch (lr 2e-3, seed 0), 4000 more (lr 1e-3, seed 1), 3000 (lr 5e-4, "
                   "seed 2), 1000 (lr 1e-3, seed 3), 11000 (lr 1e-3, seed 4), 4000 (lr 5e-4, seed 5), then "),
    "deeplabv3-mobilenet": "1500 iterations from scratch (lr 2e-3, seed 0), then ",
    "fcn8s": "1500 iterations from scratch (lr 2e-3, seed 0), then ",
    "fcn32s": ("1500 iterations from scratch stayed at all-background; started again from fcn8s-synth's first "
               "1500 iterations (backbone and classifier copied), then "),
    "lraspp": "backbone from deeplabv3-mobilenet-synth (same MobileNetV3-Large, same data), then ",
}
TEST_SET = "segcli data synth --seed 2 --n 300 --size 128x128 --val-fraction 1.0 (held out; training used seed 1)"


def shipped_record(model: str, stem: str):
    path = ROOT / "weights" / f"{stem}.safetensors"
    evaluation = ROOT / "training" / "logs" / f"{model}.eval.json"
    if not path.is_file() or not evaluation.is_file():
        return None
    metadata = read_segcli_metadata(path)
    scores = json.loads(evaluation.read_text())
    training = metadata.extra or {}
    metrics = {
        "miou": round(scores["miou"], 4), "pixel_acc": round(scores["pixel_acc"], 4),
        "per_class_iou": {k: (None if v is None else round(v, 4)) for k, v in scores["per_class"].items()},
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "source": f"segcli evaluate on {TEST_SET}, fp32, no CRF",
    }
    widths = ", ".join(f"{k}={v}" for k, v in metadata.record.kwargs.items())
    notes = (f"trained by segcli itself: training/train_shipped.sh {model} "
             f"({EARLIER_STAGES.get(model, '')}{training.get('iterations')} iterations, batch {training.get('batch_size')}, "
             f"{training.get('optimizer')}, {training.get('precision')}; the last stage took {training.get('train_seconds')} s "
             "on a 2-core CPU shared with another run)"
             + (f"; reduced width: {widths}" if widths else "")
             + ". Procedural scenes only: it does not segment photographs.")
    return dataclasses.replace(
        metadata.record, name=stem, filename=path.name, url=None, sha256=sha256_of(path),
        metrics=tuple(sorted(metrics.items())), license="MIT (segcli)", notes=notes,
    )


def main() -> int:
    manifest = shipped_manifest_path()
    records = read_manifest_file(manifest)
    by_name = {record.name: index for index, record in enumerate(records)}
    for model, stem in SHIPPED.items():
        record = shipped_record(model, stem)
        if record is None:
            print(f"{stem}: no weights or no evaluation yet, left out")
            continue
        if record.name in by_name:
            records[by_name[record.name]] = record
        else:
            records.append(record)
        print(f"{stem}: mIoU {record.metric_dict['miou']:.4f}, {record.metric_dict['size_mb']} MB")
    write_manifest_file(manifest, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
