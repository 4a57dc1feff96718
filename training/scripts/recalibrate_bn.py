"""Recompute the BatchNorm statistics of a trained segcli checkpoint in place (see
`segcli.training.recalibrate_batch_norm`). `segcli train` does this itself; this script mends files
trained before it did.

Usage: python training/recalibrate_bn.py weights/X.safetensors DATA_DIR [--batches 50]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from segcli.checkpoints.loading import load_checkpoint_model, read_segcli_metadata
from segcli.checkpoints.saving import save_segcli_checkpoint
from segcli.checkpoints.resolve import resolve_checkpoint
from segcli.data.voc import SegmentationDataset, read_split
from segcli.device import plan_execution
from segcli.training.batchnorm import recalibrate_batch_norm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("data_dir")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    metadata = read_segcli_metadata(args.checkpoint)
    resolved = resolve_checkpoint(metadata.record.model, args.checkpoint)
    model = load_checkpoint_model(resolved)
    dataset = SegmentationDataset(read_split(args.data_dir, "train"), resolved.record.num_classes,
                                  resolved.record.preprocessing, augment=False)
    plan = plan_execution("cpu", "fp32", channels_last=False)
    torch.manual_seed(0)
    used = recalibrate_batch_norm(model, dataset, plan, args.batch_size, seed=0, batches=args.batches)
    extra = dict(metadata.extra or {}, bn_recalibration_batches=used)
    save_segcli_checkpoint(args.checkpoint, model, dataclasses.replace(metadata.record), extra=extra, half=True)
    print(f"{args.checkpoint}: BatchNorm statistics recomputed over {used} batches")


if __name__ == "__main__":
    main()
