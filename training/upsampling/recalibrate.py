"""Recompute the BatchNorm statistics of trained compare-upsampling decoders, without retraining.

The decoders in weights/upsampling/ (and the seed-check retrains in data-cache/upsampling-seedN/)
were trained before train.py recomputed BatchNorm statistics for the final weights; their running
averages lag behind the weights. This applies the same step train.py now takes
(`recalibrate_decoder`: whole training images at scale 1, 50 batches, the file's own batch size
and seed), re-validates on the val split, and re-saves each file in place as float16. The record
is kept, except that its metrics become the new validation metrics; the old ones are kept under
`metrics_before_bn_recalibration` in the extra metadata, beside `bn_recalibration_batches`.

Usage (from the repository root):
  python training/upsampling/recalibrate.py weights/upsampling data-cache/upsampling-seed1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from segcli.checkpoints.loading import read_segcli_metadata, save_segcli_checkpoint
from segcli.data.voc import read_split
from segcli.errors import CheckpointError
from segcli.upsampling.decoders import load_decoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import evaluate, recalibrate_decoder  # noqa: E402  (the training script's own steps)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="decoder files, or folders of *.safetensors decoders")
    parser.add_argument("--data", type=Path, default=Path("data-cache/upsampling-synth"),
                        help="the synth set the decoders were trained on (train and val splits)")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def decoder_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        found = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not found:
            raise CheckpointError(f"no *.safetensors decoder in {path}")
        files.extend(found)
    return files


def recalibrate_file(path: Path, train_pairs, val_pairs, batches: int) -> dict:
    """Recompute one decoder file's BatchNorm statistics and re-save it; returns old and new val metrics."""
    metadata = read_segcli_metadata(path)
    net, record = load_decoder(path)  # checks that it is a decoder file
    extra = dict(metadata.extra or {})
    training = extra.get("training", {})
    used = recalibrate_decoder(net, train_pairs, int(training.get("batch", 8)), int(training.get("seed", 0)),
                               batches)
    metrics = evaluate(net, val_pairs)
    before = extra.get("metrics_before_bn_recalibration", dict(record.metrics))  # a second run keeps the first
    extra.update({"bn_recalibration_batches": used, "metrics_before_bn_recalibration": before})
    new_record = dataclasses.replace(record, metrics=tuple(sorted(metrics.items())))
    save_segcli_checkpoint(path, net.eval(), new_record, extra=extra, half=True)
    return {"file": str(path), "method": net.method, "batches": used, "before": before, "after": metrics}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    train_pairs, val_pairs = read_split(args.data, "train"), read_split(args.data, "val")
    for path in decoder_files(args.paths):
        print(json.dumps(recalibrate_file(path, train_pairs, val_pairs, args.batches)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
