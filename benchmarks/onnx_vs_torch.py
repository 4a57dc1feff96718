"""onnxruntime against torch on this CPU, for every checkpoint shipped in segcli/weights.

    python benchmarks/onnx_vs_torch.py                          # 512x512, 15 interleaved rounds, all shipped
    python benchmarks/onnx_vs_torch.py --rounds 5 --size 256    # quicker
    python benchmarks/onnx_vs_torch.py --json benchmarks/onnx_vs_torch.json --markdown benchmarks/onnx_vs_torch.md

Per checkpoint, one image (a procedural scene) goes through `engine.predict` (preprocess, forward,
logits at the image size, argmax; no CRF) with:
  torch fp32             the engine, fp32, contiguous tensors (the bare model's memory format)
  torch fp32 cl          the engine, fp32, channels_last
  torch bf16 cl          the engine's default on this CPU (bf16 autocast + channels_last)
  onnxruntime            `predict --weights FILE.onnx`: the exported graph (static, at the size) via
                         onnxruntime's CPU provider, behind the same engine
  openvino               (when installed) the same ONNX file compiled by OpenVINO for the CPU, default
                         hints (which pick bf16 where the CPU has it)
Variants run interleaved (one call each per round, order rotated) so machine noise hits all alike;
the table has medians and the ratio to torch bf16 cl (> 1: faster than the engine's default). Label
agreement is against torch fp32 on the timed scene and three more at the same size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from segcli.benchmarking.measure import LatencyStats, time_call
from segcli.checkpoints.loading import load_checkpoint_model
from segcli.checkpoints.manifest import load_manifest
from segcli.checkpoints.resolve import find_on_disk, resolve_checkpoint
from segcli.engine import SegmentationEngine
from segcli.inference_options import InferenceOptions
from segcli.loaded_model import LoadedModel
from segcli.export.exporter import ExportSettings, export_model
from segcli.checkpoints.onnx_model import OnnxRuntimeModel, read_onnx_metadata, record_from_metadata
from segcli.export.verify import scenes

REFERENCE, DEFAULT = "torch fp32", "torch bf16 cl"


class OpenVinoModel(torch.nn.Module):
    """The ONNX file compiled by OpenVINO, with OnnxRuntimeModel's interface (0..255 RGB NCHW in)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import openvino

        threads = {"INFERENCE_NUM_THREADS": torch.get_num_threads()}  # as many as torch and onnxruntime get
        self.compiled = openvino.Core().compile_model(str(path), "CPU", threads)
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = batch.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        return torch.from_numpy(self.compiled({"image": pixels})["logits"].copy())


def shipped_records() -> list:
    return [record for record in load_manifest().values() if record.layout == "segcli" and find_on_disk(record)]


def engines_for(record, onnx_path: Path, with_openvino: bool) -> dict[str, SegmentationEngine]:
    resolved = resolve_checkpoint(record.model, record.name)
    model = load_checkpoint_model(resolved)
    def built(network, record_, precision="fp32", channels_last=False, runs_on=None):
        options = InferenceOptions(precision=precision, channels_last=channels_last)
        return SegmentationEngine.from_checkpoint(LoadedModel(network, record_, runs_on=runs_on), device="cpu",
                                                  options=options)

    engines = {
        "torch fp32": built(model, record),
        "torch fp32 cl": built(load_checkpoint_model(resolved), record, channels_last=True),
        "torch bf16 cl": built(load_checkpoint_model(resolved), record, "bf16", channels_last=True),
    }
    graph_record = record_from_metadata(read_onnx_metadata(onnx_path), onnx_path)
    engines["onnxruntime"] = built(OnnxRuntimeModel(onnx_path), graph_record, runs_on=("cpu", "fp32"))
    if with_openvino:
        engines["openvino"] = built(OpenVinoModel(onnx_path), graph_record, runs_on=("cpu", "fp32"))
    return engines


def interleaved_medians(engines: dict, image: np.ndarray, rounds: int) -> dict[str, float]:
    names = list(engines)
    for name in names:  # warm-up (onnxruntime and oneDNN pick kernels on the first calls)
        engines[name].predict(image)
        engines[name].predict(image)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_call(lambda: engines[name].predict(image)).wall_ms)
    return {name: LatencyStats.from_samples(values).p50_ms for name, values in samples.items()}


def agreements(engines: dict, images: list[np.ndarray]) -> dict[str, float]:
    reference = [engines[REFERENCE].predict(image).labels for image in images]
    result = {}
    for name, engine in engines.items():
        equal = sum(int((engine.predict(image).labels == labels).sum()) for image, labels in zip(images, reference))
        result[name] = equal / sum(labels.size for labels in reference)
    return result


def measure(record, size: tuple[int, int], rounds: int, with_openvino: bool, folder: Path) -> dict:
    onnx_path = folder / f"{record.name}.onnx"
    model = load_checkpoint_model(resolve_checkpoint(record.model, record.name))
    export_model(model, record, onnx_path, ExportSettings(size=size, overwrite=True))
    engines = engines_for(record, onnx_path, with_openvino)
    images = list(scenes(4, *size, first_index=100))
    medians = interleaved_medians(engines, images[0], rounds)
    return {
        "checkpoint": record.name, "model": record.model, "size": list(size),
        "median_ms": medians,
        "ratio_vs_default": {name: medians[DEFAULT] / value for name, value in medians.items()},
        "agreement_vs_fp32": agreements(engines, images),
        "openvino_precision": engines["openvino"].model.precision if "openvino" in engines else None,
    }


def markdown(results: list[dict], header: str) -> str:
    names = list(results[0]["median_ms"])
    others = [name for name in ("onnxruntime", "openvino") if name in names]
    columns = [f"{name} ms" for name in names] + ["fastest"] + [
        f"{name} {label}" for name in others for label in ("vs bf16 cl", "labels = fp32")]
    lines = [header, "", "| checkpoint | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in results:
        medians = row["median_ms"]
        cells = [f"{medians[name]:.1f}" for name in names] + [min(medians, key=medians.get)]
        for name in others:
            cells += [f"{row['ratio_vs_default'][name]:.2f}x", f"{row['agreement_vs_fp32'][name]:.2%}"]
        lines.append(f"| {row['checkpoint']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--checkpoints", default="", help="comma-separated names (default: every shipped one)")
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    try:
        import openvino  # noqa: F401
        with_openvino = not args.no_openvino
    except ImportError:
        with_openvino = False
    if args.threads:
        torch.set_num_threads(args.threads)  # OnnxRuntimeModel takes torch's thread count
    records = shipped_records()
    if args.checkpoints:
        records = [record for record in records if record.name in args.checkpoints.split(",")]
    size = (args.size, args.size)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for record in records:
            print(f"{record.name} ...", file=sys.stderr, flush=True)
            results.append(measure(record, size, args.rounds, with_openvino, Path(folder)))
    import onnxruntime

    import os

    environment = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                   "threads": torch.get_num_threads(), "command": " ".join(["python", *sys.argv]),
                   "load_average_after": os.getloadavg(), "cpu_count": os.cpu_count()}
    header = (f"`{environment['command']}`: {args.size}x{args.size}, batch 1, {args.rounds} interleaved rounds, "
              f"medians, {environment['threads']} threads, torch {environment['torch']}, "
              f"onnxruntime {environment['onnxruntime']}, load average after the run "
              f"{environment['load_average_after'][1]:.1f} on {environment['cpu_count']} cores")
    table = markdown(results, header)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"environment": environment, "results": results}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
