"""Train one compare-upsampling decoder (`UpsamplingNet` with one upsampling method) on synth data.

Every method gets the same data, seed, initial weights (the upsampling layers are built last),
batches, augmentation and schedule, so the only difference is the upsampling. After training, the
BatchNorm statistics are recomputed for the final weights on whole training images at scale 1
(`segcli.training.recalibrate_batch_norm`, as `segcli train` does) before validation and saving.
Run all five with training/upsampling/train_all.sh.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segcli.checkpoints.loading import save_segcli_checkpoint
from segcli.checkpoints.record import IMAGENET_PREPROCESSING
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.data.voc import SegmentationDataset, read_split
from segcli.engine import preprocess
from segcli.device import plan_execution
from segcli.metrics import ConfusionMatrix
from segcli.training import recalibrate_batch_norm
from segcli.upsampling.boundary import BoundaryCounts, boundary_counts
from segcli.upsampling.decoders import decoder_filename, decoder_record
from segcli.upsampling.methods import METHOD_NAMES
from segcli.upsampling.network import UpsamplingNet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", choices=METHOD_NAMES, required=True)
    parser.add_argument("--data", type=Path, default=Path("data-cache/upsampling-synth"))
    parser.add_argument("--n", type=int, default=600, help="scenes to generate when --data does not exist")
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("weights/upsampling"))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--scale-min", type=float, default=0.5)
    parser.add_argument("--scale-max", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--bn-batches", type=int, default=50,
                        help="batches of whole training images to recompute BatchNorm statistics over (0: off)")
    return parser.parse_args(argv)


def ensure_dataset(args: argparse.Namespace) -> None:
    if not (args.data / "ImageSets" / "Segmentation" / "train.txt").is_file():
        print(f"writing {args.n} synth scenes (seed {args.data_seed}) to {args.data}", flush=True)
        write_synth_dataset(args.data, n=args.n, seed=args.data_seed, size=(128, 128), val_fraction=0.2)


def evaluate(net: UpsamplingNet, pairs, boundary_px: int = 2) -> dict[str, float]:
    """mIoU, pixel accuracy and boundary F on whole val images."""
    from segcli.data.voc import load_mask, load_rgb

    confusion = ConfusionMatrix(len(SYNTH_CLASSES))
    boundary = BoundaryCounts()
    net.eval()
    with torch.inference_mode():
        for image_path, mask_path in pairs:
            image, mask = load_rgb(image_path), load_mask(mask_path, len(SYNTH_CLASSES))
            labels = net(preprocess(image, IMAGENET_PREPROCESSING)).argmax(1)[0].numpy()
            confusion.update(labels, mask)
            boundary = boundary + boundary_counts(labels, mask, boundary_px)
    net.train()
    return {"val_miou": round(confusion.miou(), 4), "val_pixel_acc": round(confusion.pixel_accuracy(), 4),
            "val_boundary_f2": round(boundary.f_score, 4), "val_images": len(pairs)}


def recalibrate_decoder(net: UpsamplingNet, train_pairs, batch_size: int, seed: int, batches: int = 50) -> int:
    """Recompute `net`'s BatchNorm statistics on whole training images at scale 1; returns batches used."""
    whole_images = SegmentationDataset(train_pairs, len(SYNTH_CLASSES), IMAGENET_PREPROCESSING, augment=False)
    plan = plan_execution("cpu", "fp32", channels_last=False)
    return recalibrate_batch_norm(net, whole_images, plan, batch_size, seed, batches=batches)


def poly_lr(base: float, step: int, total: int) -> float:
    return base * (1 - step / total) ** 0.9


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ensure_dataset(args)
    train_pairs, val_pairs = read_split(args.data, "train"), read_split(args.data, "val")
    dataset = SegmentationDataset(train_pairs, len(SYNTH_CLASSES), IMAGENET_PREPROCESSING,
                                  crop=(args.crop, args.crop), scale_range=(args.scale_min, args.scale_max))
    torch.manual_seed(args.seed)
    net = UpsamplingNet(len(SYNTH_CLASSES), args.method).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sampler = np.random.default_rng(args.seed)  # same batches and augmentations for every method
    started = time.perf_counter()
    running = 0.0
    for step in range(args.iterations):
        indices = sampler.integers(0, len(dataset), size=args.batch)
        seeds = sampler.integers(0, 2**31 - 1, size=args.batch)
        items = [dataset[(int(i), int(s))] for i, s in zip(indices, seeds)]
        images = torch.stack([image for image, _ in items])
        masks = torch.stack([mask for _, mask in items])
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(args.lr, step, args.iterations)
        loss = F.cross_entropy(net(images), masks, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item()
        if (step + 1) % args.log_every == 0:
            print(f"step {step + 1}/{args.iterations} loss {running / args.log_every:.4f} "
                  f"lr {optimizer.param_groups[0]['lr']:.2e} {time.perf_counter() - started:.0f}s", flush=True)
            running = 0.0
    seconds = time.perf_counter() - started
    recalibrated = recalibrate_decoder(net, train_pairs, args.batch, args.seed, args.bn_batches)
    print(f"BatchNorm statistics recomputed for the final weights over {recalibrated} batches", flush=True)
    metrics = evaluate(net, val_pairs)
    print(json.dumps({"method": args.method, **metrics, "train_seconds": round(seconds, 1)}), flush=True)
    training = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    training.update({"train_seconds": round(seconds, 1), "torch": torch.__version__, "optimizer": "Adam, poly 0.9"})
    record = decoder_record(args.method, SYNTH_CLASSES, net.widths, metrics)
    extra = {"training": training, "bn_recalibration_batches": recalibrated}  # top level, as `segcli train` writes it
    path = save_segcli_checkpoint(args.out / decoder_filename(args.method), net.eval(), record, extra=extra, half=True)
    print(f"saved {path} ({path.stat().st_size / 1024:.0f} KiB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
