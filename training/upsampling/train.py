"""Train the compare-upsampling decoders: every method x every seed, on cached frozen-encoder features.

1. Synth scenes (data seed 7; the encoder was trained on seed 1, the held-out test draw is seed 2024).
2. The frozen deeplabv3p-mobilenet-synth encoder's features, computed once per image and cached.
3. Per seed, per method: `segcli.upsampling.training.prepare` -> `segcli.training.fit` -> `finish`,
   with a validation-mIoU curve; curves.json is rewritten after each decoder, curves.png at the end.
Run with training/upsampling/train_all.sh (one background process, one thread).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import torch

from segcli.checkpoints.record import IMAGENET_PREPROCESSING
from segcli.data.synth import SYNTH_CLASSES, write_synth_dataset
from segcli.data.voc import read_split
from segcli.atomic import atomic_write_bytes
from segcli.atomic import atomic_write_json
from segcli.upsampling.encoder import load_shared_encoder
from segcli.upsampling.features import FeatureCache, cache_features
from segcli.upsampling.methods import METHOD_NAMES
from segcli.upsampling.training import DecoderTraining, finish, prepare, train_decoder

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data-cache/upsampling-synth"))
    parser.add_argument("--n", type=int, default=400, help="scenes to generate when --data does not exist")
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--methods", default=",".join(METHOD_NAMES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=DecoderTraining.iterations)
    parser.add_argument("--batch", type=int, default=DecoderTraining.batch_size)
    parser.add_argument("--crop", type=int, default=DecoderTraining.crop)
    parser.add_argument("--lr", type=float, default=DecoderTraining.lr)
    parser.add_argument("--eval-every", type=int, default=DecoderTraining.eval_every)
    parser.add_argument("--out", type=Path, default=Path("segcli/weights/upsampling"))
    parser.add_argument("--curves", type=Path, default=HERE / "curves.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot-only", action="store_true", help="only redraw curves.png from curves.json")
    return parser.parse_args(argv)


def cached(data: Path, split: str) -> FeatureCache:
    path = data.parent / f"{data.name}-features-{split}.pt"
    if path.is_file():
        return FeatureCache.load(path)
    started = time.perf_counter()
    encoder = load_shared_encoder(DecoderTraining.widths)
    cache = cache_features(encoder, read_split(data, split), len(SYNTH_CLASSES), IMAGENET_PREPROCESSING)
    cache.save(path)
    print(f"cached encoder features of {len(cache)} {split} images in {time.perf_counter() - started:.0f}s "
          f"-> {path}", flush=True)
    return cache


def plot_curves(curves: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), dpi=110)
    loss_axes, miou_axes = figure.subplots(1, 2)
    colours = {}
    for name, run in curves["runs"].items():
        method = run["method"]
        colour = colours.setdefault(method, f"C{len(colours)}")
        label = method if run["seed"] == 0 else None
        loss_axes.plot(run["iteration"], run["loss"], color=colour, lw=0.8, alpha=0.8, label=label)
        miou_axes.plot(run["val_iteration"], run["val_miou"], color=colour, lw=1.0, marker=".", label=label)
    loss_axes.set(xlabel="iteration", ylabel="training loss (OHEM cross-entropy)", yscale="log", title="loss (every seed)")
    miou_axes.set(xlabel="iteration", ylabel="val mIoU", title="validation mIoU (every seed)")
    miou_axes.set_ylim(0, 1)
    for axes in (loss_axes, miou_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.plot_only:
        print(plot_curves(json.loads(args.curves.read_text()), args.curves.with_suffix(".png")))
        return 0
    if not (args.data / "ImageSets" / "Segmentation" / "train.txt").is_file():
        print(f"writing {args.n} synth scenes (seed {args.data_seed}) to {args.data}", flush=True)
        write_synth_dataset(args.data, n=args.n, seed=args.data_seed, size=(128, 128), val_fraction=0.2)
    train_cache, val_cache = cached(args.data, "train"), cached(args.data, "val")
    settings = DecoderTraining(iterations=args.iterations, batch_size=args.batch, crop=args.crop, lr=args.lr,
                               eval_every=args.eval_every)
    curves = {"settings": vars(settings) | {"train_images": len(train_cache), "val_images": len(val_cache),
                                            "data_seed": args.data_seed}, "runs": {}}
    if args.curves.is_file():
        curves["runs"] = json.loads(args.curves.read_text()).get("runs", {})
    extra = {"data": f"segcli data synth seed {args.data_seed}, {len(train_cache)} train scenes 128x128",
             "encoder": "deeplabv3p-mobilenet-synth (frozen)"}
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in args.methods.split(","):
            run = prepare(method, seed, train_cache, len(SYNTH_CLASSES), settings)
            outcome = train_decoder(run, val_cache, len(SYNTH_CLASSES), log=lambda line: print(line, flush=True))
            path = finish(run, outcome, args.out, SYNTH_CLASSES, extra)
            curves["runs"][f"{method}-seed{seed}"] = {"method": method, "seed": seed,
                                                      "seconds": round(outcome.seconds, 1), **run.curve}
            atomic_write_json(args.curves, curves)
            print(f"saved {path} ({path.stat().st_size / 1024:.0f} KiB) after {outcome.seconds:.0f}s", flush=True)
    print(plot_curves(curves, args.curves.with_suffix(".png")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
