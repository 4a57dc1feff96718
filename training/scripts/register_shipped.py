"""Record the shipped checkpoints in the manifest (record, SHA-256, held-out metrics) and regenerate
README's table of them.

Usage: python training/scripts/register_shipped.py [--root REPO]
       (after training/scripts/train_shipped.sh, or training/scripts/import_gpu_results.py)
Reads segcli/weights/<stem>.safetensors (the record travels in the file's metadata), the held-out
evaluation training/results/<stem>.eval.json written by `segcli evaluate`, and, for a checkpoint
trained in a GPU session, training/results/<stem>.training.json (what the session did). Replaces or
appends the record of the same name in the shipped manifest, then rewrites the README table between
its two marker comments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from segcli.checkpoints.download import sha256_of
from segcli.checkpoints.loading import read_segcli_metadata
from segcli.checkpoints.manifest import read_manifest_file, read_shared_definitions, write_manifest_file

ROOT = Path(__file__).resolve().parents[2]
# checkpoint stem in segcli/weights/ -> the zoo model it is for
SHIPPED = {
    "deeplabv3p-mobilenet-synth": "deeplabv3p", "lraspp-mobilenet-synth": "lraspp",
    "deeplabv3-mobilenet-synth": "deeplabv3-mobilenet", "fcn8s-synth": "fcn8s", "fcn16s-synth": "fcn16s",
    "fcn32s-synth": "fcn32s", "deeplabv1-synth": "deeplabv1", "deeplabv2-synth": "deeplabv2",
}
# CPU training stages before the last one (a file's metadata describes only its last stage)
EARLIER_STAGES = {
    "deeplabv3p-mobilenet-synth": ("3500 iterations from scratch (lr 2e-3, seed 0), 4000 more (lr 1e-3, seed 1), "
                                   "3000 (lr 5e-4, seed 2), 1000 (lr 1e-3, seed 3), 11000 (lr 1e-3, seed 4), 4000 "
                                   "(lr 5e-4, seed 5), then "),
    "deeplabv3-mobilenet-synth": "1500 iterations from scratch (lr 2e-3, seed 0), then ",
    "fcn8s-synth": "1500 iterations from scratch (lr 2e-3, seed 0), then ",
    "fcn32s-synth": ("runs from scratch and from all of fcn8s-synth, on the CPU and on an H200, stayed at the "
                     "all-background answer (dead ReLUs in conv5_3 and fc6); started from fcn8s-synth's conv1_1..conv5_2 "
                     "(training/scripts/fcn32s_init.py) at lr 3e-4 with 100 warm-up iterations, "),
    "lraspp-mobilenet-synth": "backbone from deeplabv3-mobilenet-synth (same MobileNetV3-Large, same data), then ",
}
# the script that made a CPU-trained checkpoint, where it is not train_shipped.sh
SCRIPTS = {"fcn32s-synth": "training/scripts/train_fcn32s.sh"}
# what the CPU had done to a checkpoint that a GPU session then fine-tuned
CPU_HISTORY = {
    "deeplabv3p-mobilenet-synth": "32,500 iterations in seven stages on a 2-core CPU (batch 8, 96x96 crops)",
    "lraspp-mobilenet-synth": "5,500 iterations on a 2-core CPU from deeplabv3-mobilenet-synth's backbone",
    "deeplabv3-mobilenet-synth": "13,500 iterations on a 2-core CPU",
    "fcn8s-synth": "3,500 iterations on a 2-core CPU (bf16)",
    "fcn32s-synth": "2,000 iterations on a 2-core CPU from fcn8s-synth's first stage",
}
TEST_SET = "segcli data synth --seed 2 --n 300 --size 128x128 --val-fraction 1.0 (held out; training used seed 1)"
TABLE_BEGIN = "<!-- shipped-checkpoints table: training/scripts/register_shipped.py writes it -->"
TABLE_END = "<!-- end of shipped-checkpoints table -->"


def training_notes(stem: str, model: str, extra: dict, session: dict | None) -> str:
    """Where the weights came from, in one sentence or two (the manifest's `notes`)."""
    if session is None:
        script = SCRIPTS.get(stem, f"training/scripts/train_shipped.sh {model}")
        return (f"trained by segcli itself: {script} ({EARLIER_STAGES.get(stem, '')}"
                f"{extra.get('iterations')} iterations, batch {extra.get('batch_size')}, {extra.get('optimizer')}, "
                f"{extra.get('precision')}; the last stage took {extra.get('train_seconds')} s on a 2-core CPU "
                "shared with another run)")
    lane = session.get("lane", {})
    start = lane.get("init")
    if session.get("history"):  # written by hand where a lane started from an earlier session's output
        history = session["history"]
    elif start == stem:
        history = f"{CPU_HISTORY.get(stem, 'CPU training')}, then "
    elif start:
        history = f"the tensors it shares with {start} copied from it, then "
    else:
        history = "from scratch: "
    crop = "x".join(str(side) for side in extra.get("crop") or []) or "whole-scene"
    return (f"trained by segcli itself: {history}{extra.get('iterations')} iterations on {session.get('gpu')} "
            f"(training/gpu_session.sh, lane {lane.get('name')}: batch {extra.get('batch_size')}, {crop} crops, "
            f"lr {extra.get('lr')} with {extra.get('warmup_iters')} warm-up iterations, {extra.get('optimizer')}, "
            f"{extra.get('precision')}, {extra.get('train_seconds')} s of training "
            f"{'beside the session' + chr(39) + 's other lanes' if session.get('shared_gpu', True) else 'alone on the GPU'})")


def shipped_record(root: Path, stem: str, model: str):
    path = root / "segcli" / "weights" / f"{stem}.safetensors"
    evaluation = root / "training" / "results" / f"{stem}.eval.json"
    if not path.is_file() or not evaluation.is_file():
        return None
    metadata = read_segcli_metadata(path)
    scores = json.loads(evaluation.read_text())
    session_file = root / "training" / "results" / f"{stem}.training.json"
    session = json.loads(session_file.read_text()) if session_file.is_file() else None
    metrics = {
        "miou": round(scores["miou"], 4), "pixel_acc": round(scores["pixel_acc"], 4),
        "per_class_iou": {k: (None if v is None else round(v, 4)) for k, v in scores["per_class"].items()},
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "source": f"segcli evaluate on {TEST_SET}, fp32, no CRF",
    }
    widths = ", ".join(f"{k}={v}" for k, v in metadata.record.kwargs.items())
    notes = (training_notes(stem, model, metadata.extra or {}, session)
             + (f"; builder options: {widths}" if widths else "")
             + ". Procedural scenes only: it does not segment photographs.")
    return dataclasses.replace(
        metadata.record, name=stem, filename=path.name, url=None, sha256=sha256_of(path),
        metrics=tuple(sorted(metrics.items())), license="MIT (segcli)", notes=notes,
    )


def readme_table(records) -> str:
    """The README's table of shipped checkpoints, best held-out mIoU first."""
    rows = ["| checkpoint | model | options | mIoU | pixel acc | size |", "|---|---|---|---|---|---|"]
    for record in sorted(records, key=lambda r: -r.metric_dict["miou"]):
        options = ", ".join(f"{k}={v}" for k, v in record.kwargs.items()) or "full width"
        metrics = record.metric_dict
        rows.append(f"| `{record.name}` | `{record.model}` | {options} | {metrics['miou']:.3f} | "
                    f"{metrics['pixel_acc']:.3f} | {metrics['size_mb']:.2f} MB |")
    return "\n".join(rows)


def rewrite_readme(readme: Path, table: str) -> bool:
    text = readme.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        return False
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    readme.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root [default: this checkout]")
    root = parser.parse_args(argv).root.resolve()
    manifest = root / "segcli" / "weights" / "manifest.json"
    records = read_manifest_file(manifest)
    by_name = {record.name: index for index, record in enumerate(records)}
    for stem, model in SHIPPED.items():
        record = shipped_record(root, stem, model)
        if record is None:
            print(f"{stem}: no weights or no evaluation yet, left out")
            continue
        if record.name in by_name:
            records[by_name[record.name]] = record
        else:
            records.append(record)
        print(f"{stem}: mIoU {record.metric_dict['miou']:.4f}, {record.metric_dict['size_mb']} MB")
    write_manifest_file(manifest, records, read_shared_definitions(manifest))  # class sets, presets kept
    listed = [record for record in records if record.name in SHIPPED and record.metric_dict.get("miou") is not None]
    if not rewrite_readme(root / "README.md", readme_table(listed)):
        print("README.md has no shipped-checkpoints table markers: table not written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
