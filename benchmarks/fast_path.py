"""Fast-path benchmark: every figure is a ratio against a naive baseline in the same run.

    python benchmarks/fast_path.py                 # all sections, ~4 min on 2 cores
    python benchmarks/fast_path.py --quick         # smaller everything, ~1 min (a smoke test)
    python benchmarks/fast_path.py --sections crf,folder

Baseline: fp32, contiguous tensors, one image at a time, full-label CRF, no I/O overlap.
Shipped checkpoints are used where `weights/` has them (agreement is then meaningful); otherwise
random weights (speed is the same; agreement on random logits is a lower bound). Results go to
stdout as a table and, with --json, to a file; FAST_PATH.md records a run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segcli.benchmarking.measure import LatencyStats, time_call, time_calls
from segcli.checkpoints.record import CheckpointRecord, Preprocessing
from segcli.engine import SegmentationEngine, preprocess
from segcli.inference_options import InferenceOptions
from segcli.loaded_model import LoadedModel
from segcli.errors import SegcliError
from segcli.models import build_model

VOC21 = tuple(f"class{i}" for i in range(21))
FORWARD_MODELS = ("lraspp", "deeplabv3-mobilenet", "deeplabv3p-mobilenet",
                  "fcn-resnet50", "deeplabv3-resnet50", "deeplabv3p-resnet50")


def median_seconds(run, repeats: int, warmup: int = 1) -> float:
    """Median seconds of `repeats` timed calls after `warmup` untimed ones (segcli.benchmarking's timers)."""
    return LatencyStats.from_samples(time_calls(run, warmup, repeats, lambda: None)).p50_ms / 1000.0


def engine_for(model: str, precision: str, channels_last: bool) -> tuple[SegmentationEngine, str]:
    """The shipped checkpoint when one is on disk, else random weights (21 classes)."""
    try:
        options = InferenceOptions(precision=precision, channels_last=channels_last)
        engine = SegmentationEngine.load(model, device="cpu", options=options)
        return engine, engine.source
    except (SegcliError, ImportError):
        torch.manual_seed(0)
        network = build_model(model, num_classes=21)
        record = CheckpointRecord(name=f"{model}-random", model=model, dataset="none", categories=VOC21,
                                  filename="-", preprocessing=Preprocessing())
        return SegmentationEngine.from_checkpoint(LoadedModel(network, record), device="cpu", options=options), \
            "random weights"


def sample_images(size: int, count: int) -> list[np.ndarray]:
    """samples/ photos (shorter side scaled to `size`), else procedural scenes."""
    from PIL import Image

    from segcli.data.synth import make_scene

    files = sorted(p for p in Path("samples").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    images = []
    for path in files:
        image = Image.open(path).convert("RGB")
        scale = size / min(image.size)
        images.append(np.asarray(image.resize((round(image.width * scale), round(image.height * scale)))))
    for index in range(count - len(images)):
        images.append(make_scene(7, index, (size, size)).image)
    return images


def bench_forward(args) -> list[dict]:
    rows = []
    images = sample_images(args.size, args.samples)
    for model in args.models:
        base, source = engine_for(model, "fp32", channels_last=False)
        fast, _ = engine_for(model, "auto", channels_last=None)
        batch = preprocess(images[0], base.record.preprocessing)
        t_base = median_seconds(lambda: base.forward(batch), args.repeats)
        t_fast = median_seconds(lambda: fast.forward(batch), args.repeats)
        agree = []
        for image in images:
            tensor = preprocess(image, base.record.preprocessing)
            agree.append((base.forward(tensor).argmax(1) == fast.forward(tensor).argmax(1)).float().mean().item())
        rows.append({"section": "forward", "model": model, "weights": source, "precision": fast.plan.precision,
                     "baseline_ms": t_base * 1e3, "fast_ms": t_fast * 1e3, "ratio": t_fast / t_base,
                     "pixel_agreement": float(np.mean(agree)), "min_image_agreement": float(np.min(agree))})
        print_row(rows[-1])
    return rows


def _blur(planes: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma)
    kernel = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    channels = planes.shape[0]
    x = F.pad(planes[None], (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)[0]


def realistic_probabilities(size: int, num_classes: int = 21, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A procedural scene and a softmax map shaped like a trained net's: confident inside regions,
    soft at boundaries, a confusable runner-up class per region, smooth noise on every label."""
    from segcli.data.synth import make_scene

    scene = make_scene(seed, 0, (size, size))
    mask = scene.mask.astype(np.int64)
    mask[mask == 255] = 0
    generator = torch.Generator().manual_seed(seed)
    names = torch.randperm(num_classes - 1, generator=generator)[:9] + 1
    names[0] = 0
    labels = names[torch.from_numpy(mask)]
    onehot = F.one_hot(labels, num_classes).permute(2, 0, 1).float()
    runner_up = torch.randint(1, num_classes, (num_classes,), generator=generator)
    confusion = torch.zeros_like(onehot)
    for label in labels.unique():
        confusion[runner_up[label]] += onehot[label] * 0.6
    noise = _blur(torch.randn(num_classes, size, size, generator=generator), 12) * 12 ** 0.5 * 4
    logits = 9 * _blur(onehot, 3) + 4 * _blur(confusion, 3) - 2 + noise
    return scene.image, torch.softmax(logits, 0).numpy()


def bench_crf(args) -> list[dict]:
    """The fast CRF (`--crf`) against the reference (`--crf-full`); benchmarks/crf_speed.py measures it on
    model outputs, with repeats and CPU time."""
    from segcli.crf import CRFParams, refine

    image, probabilities = realistic_probabilities(args.crf_size)
    params = CRFParams()
    full = time_call(lambda: refine(probabilities, image, params, method="full"))
    fast = time_call(lambda: refine(probabilities, image, params))
    (reference, _), (refined, _) = full.result, fast.result
    t_full, seconds = full.wall_ms / 1000.0, fast.wall_ms / 1000.0
    row = {"section": "crf", "variant": "fast (default --crf)", "size": args.crf_size, "baseline_ms": t_full * 1e3,
           "fast_ms": seconds * 1e3, "ratio": seconds / t_full,
           "pixel_agreement": float((refined.argmax(0) == reference.argmax(0)).mean())}
    print_row(row)
    return [row]


def bench_folder(args) -> list[dict]:
    from segcli.data.synth import encode_jpeg, make_scene
    from segcli.inputs import find_images
    from segcli.outputs.plan import OutputOptions
    from segcli.pipeline.run import FolderRun
    from segcli.pipeline.scheduler import Schedule

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "in")
        folder.mkdir()
        for index in range(args.folder_images):
            Path(folder, f"{index:04d}.jpg").write_bytes(encode_jpeg(make_scene(3, index, (480, 640)).image, 90))
        sources = find_images([folder])
        schedules = {  # segcli predict's own folder pipeline, every default output written
            "baseline (fp32, one image at a time)": ("fp32", False, Schedule(1, 0)),
            "auto precision, one image at a time": ("auto", None, Schedule(1, 0)),
            "auto precision, batch 4, 2 I/O threads (the old default)": ("auto", None, Schedule(4, 2)),
            "auto precision, automatic schedule (predict's default)": ("auto", None, Schedule.auto("cpu")),
        }
        baseline = None
        for index, (name, (precision, channels_last, schedule)) in enumerate(schedules.items()):
            engine, source = engine_for(args.folder_model, precision, channels_last)
            engine.forward(preprocess(make_scene(3, 0, (480, 640)).image, engine.record.preprocessing))  # warm-up
            summary = FolderRun(OutputOptions(Path(tmp, f"out{index}")), sources).execute(engine, schedule=schedule)
            rate = summary.processed / summary.seconds
            baseline = baseline or rate
            rows.append({"section": "folder", "schedule": name, "model": args.folder_model, "weights": source,
                         "images": summary.processed, "images_per_s": rate, "speedup": rate / baseline})
            print_row(rows[-1])
    return rows


_TILE_CHILD = """
import resource, sys, numpy as np, torch
sys.path.insert(0, '.')
from benchmarks.fast_path import engine_for
from segcli.benchmarking.measure import time_call
from segcli.tiling import TilingPolicy
engine, source = engine_for(sys.argv[1], 'auto', None)
engine.tiling = TilingPolicy.parse(sys.argv[4])
image = np.random.default_rng(0).integers(0, 256, size=(int(sys.argv[2]), int(sys.argv[3]), 3), dtype=np.uint8)
timing = time_call(lambda: engine.predict(image).labels)
print(timing.wall_ms / 1000.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, source)
"""


def bench_tiling(args) -> list[dict]:
    rows = []
    for height, width, tile in args.tiling_cases:
        result = subprocess.run([sys.executable, "-c", _TILE_CHILD, args.tiling_model, str(height), str(width), tile],
                                capture_output=True, text=True)
        if result.returncode != 0:
            rows.append({"section": "tiling", "size": f"{width}x{height}", "tile": tile,
                         "error": result.stderr.strip().splitlines()[-1][:200]})
        else:
            seconds, peak_mb, *source = result.stdout.split()
            rows.append({"section": "tiling", "model": args.tiling_model, "size": f"{width}x{height}", "tile": tile,
                         "seconds": float(seconds), "peak_rss_mb": float(peak_mb), "weights": " ".join(source)})
        print_row(rows[-1])
    return rows


def bench_startup(args) -> list[dict]:
    rows = []
    for argv in (["--help"], ["--version"]):
        seconds = median_seconds(lambda: subprocess.run([sys.executable, "-m", "segcli", *argv], check=True,
                                                        capture_output=True), repeats=3)
        rows.append({"section": "startup", "command": "segcli " + argv[0], "seconds": seconds})
        print_row(rows[-1])
    return rows


def print_row(row: dict) -> None:
    print("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                           if k != "section"), flush=True)


SECTIONS = {"forward": bench_forward, "crf": bench_crf, "folder": bench_folder, "tiling": bench_tiling,
            "startup": bench_startup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small sizes and counts (smoke test)")
    parser.add_argument("--models", default=",".join(FORWARD_MODELS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.models = args.models.split(",")
    args.size, args.repeats, args.samples = (256, 2, 2) if args.quick else (520, 5, 4)
    args.crf_size = 256 if args.quick else 520
    args.folder_images, args.folder_model = (20 if args.quick else 100), "lraspp"
    args.tiling_model = "deeplabv3p-mobilenet"
    args.tiling_cases = ([(1500, 2000, "auto"), (1500, 2000, "off")] if args.quick
                         else [(3000, 4000, "auto"), (3000, 4000, "off")])
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = []
    for name in args.sections.split(","):
        print(f"[{name}]", flush=True)
        results += SECTIONS[name](args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
