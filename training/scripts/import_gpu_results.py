"""Put what a GPU session returned (training/gpu_session.sh's $OUT) into the repository.

Usage: python training/scripts/import_gpu_results.py FILES_AT [--root REPO] [--force]
  FILES_AT: the folder with results.tar.gz, weights-N.tar and SUMMARY.txt (the device reply's files_at)

- benchmarks/gpu-<card>.{json,md,png}            <- the session's `segcli benchmark --device cuda`
- training/logs/gpu-session/                     <- SUMMARY.txt, session.json, pytest and benchmark logs,
                                                    each lane's train and evaluate logs
- training/results/gpu-session/<lane>.eval.json  <- every lane's held-out evaluation
- for each checkpoint stem, the lane with the best validation mIoU (the training draw's own val split,
  never the held-out scenes) replaces segcli/weights/<stem>.safetensors when its held-out mIoU beats
  the manifest's figure (--force: always), with training/results/<stem>.eval.json and
  <stem>.training.json beside it; then training/scripts/register_shipped.py rewrites the manifest
  records and the README table. The report says what changed, whether FCN-8s > FCN-16s > FCN-32s
  holds, and the shipped weights' total size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import register_shipped  # noqa: E402  (beside this file)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_LIMIT_MB = 60.0
ALL_BACKGROUND_MIOU = 0.093  # an all-background answer on the held-out draw (README)


def unpack(files_at: Path, into: Path) -> tuple[Path, Path]:
    """results/ and weights/ (one <lane>.safetensors per finished lane) under `into`."""
    results_archive = files_at / "results.tar.gz"
    if not results_archive.is_file():
        raise SystemExit(f"{results_archive} is missing: is {files_at} the GPU session's $OUT?")
    with tarfile.open(results_archive) as archive:
        archive.extractall(into, filter="data")
    weights = into / "weights"
    weights.mkdir()
    for volume in sorted(files_at.glob("weights-*.tar")):
        with tarfile.open(volume) as archive:
            archive.extractall(weights, filter="data")
    return into / "results", weights


def copy_records(results: Path, root: Path) -> None:
    """Benchmark files, logs and every lane's evaluation into their folders in the repository."""
    benchmarks = root / "benchmarks"
    benchmarks.mkdir(exist_ok=True)
    for path in (results / "benchmarks").glob("gpu-*"):
        shutil.copy2(path, benchmarks / path.name)
    logs, evaluations = root / "training" / "logs" / "gpu-session", root / "training" / "results" / "gpu-session"
    logs.mkdir(parents=True, exist_ok=True)
    evaluations.mkdir(parents=True, exist_ok=True)
    for path in results.iterdir():
        if path.is_file():
            shutil.copy2(path, logs / path.name)
    for lane in sorted((results / "lanes").iterdir()) if (results / "lanes").is_dir() else []:
        for name in ("train.log", "eval.log", "lane.json"):
            if (lane / name).is_file():
                shutil.copy2(lane / name, logs / f"{lane.name}.{name}")
        if (lane / "eval.json").is_file():
            shutil.copy2(lane / "eval.json", evaluations / f"{lane.name}.eval.json")


def candidates(results: Path, weights: Path) -> dict[str, list[dict]]:
    """Finished lanes by checkpoint stem: lane facts, checkpoint file, held-out and validation mIoU."""
    from segcli.checkpoints.loading import read_segcli_metadata

    by_stem: dict[str, list[dict]] = {}
    for checkpoint in sorted(weights.glob("*.safetensors")):
        lane_dir = results / "lanes" / checkpoint.stem
        evaluation = lane_dir / "eval.json"
        if not evaluation.is_file():
            continue
        spec = json.loads((lane_dir / "lane.json").read_text())["lane"]
        metadata = read_segcli_metadata(checkpoint)
        if metadata is None or metadata.record.name != spec["stem"]:
            raise SystemExit(f"{checkpoint.name}: not the {spec['stem']} checkpoint its lane should have written")
        by_stem.setdefault(spec["stem"], []).append({
            "lane": spec, "checkpoint": checkpoint, "eval": evaluation,
            "held_out": float(json.loads(evaluation.read_text())["miou"]),
            "val": (metadata.extra or {}).get("val_miou"), "extra": metadata.extra or {},
        })
    return by_stem


def choose(options: list[dict]) -> dict:
    """The lane with the best validation mIoU (the held-out figure only breaks a missing one)."""
    return max(options, key=lambda option: (option["val"] if option["val"] is not None else -1.0, option["held_out"]))


def install(stem: str, chosen: dict, root: Path, session: dict) -> None:
    shutil.copy2(chosen["checkpoint"], root / "segcli" / "weights" / f"{stem}.safetensors")
    shutil.copy2(chosen["eval"], root / "training" / "results" / f"{stem}.eval.json")
    facts = {"lane": chosen["lane"], "gpu": session.get("machine", {}).get("gpu") or "a CPU (a rehearsal)",
             "validation_miou": chosen["val"], "held_out_miou": chosen["held_out"],
             "session_log": "training/logs/gpu-session/"}
    (root / "training" / "results" / f"{stem}.training.json").write_text(json.dumps(facts, indent=2) + "\n")


def recorded_miou(root: Path) -> dict[str, float]:
    from segcli.checkpoints.manifest import read_manifest_file

    records = read_manifest_file(root / "segcli" / "weights" / "manifest.json")
    return {record.name: record.metric_dict.get("miou") for record in records if record.metric_dict.get("miou")}


def import_session(files_at: Path, root: Path, force: bool = False) -> list[str]:
    """Everything above; returns the report's lines."""
    report = []
    with tempfile.TemporaryDirectory() as scratch:
        results, weights = unpack(files_at, Path(scratch))
        session = json.loads((results / "session.json").read_text())
        copy_records(results, root)
        before = recorded_miou(root)
        for stem, options in sorted(candidates(results, weights).items()):
            chosen = choose(options)
            old = before.get(stem)
            better = old is None or chosen["held_out"] > old
            lanes = ", ".join(f"{o['lane']['name']} (val {o['val']}, held-out {o['held_out']:.4f})" for o in options)
            if better or force:
                install(stem, chosen, root, session)
            verdict = "installed" if better or force else "kept the shipped one"
            report.append(f"{stem}: {verdict}: {chosen['lane']['name']} held-out {chosen['held_out']:.4f} "
                          f"(shipped: {old}); lanes: {lanes}")
    register_shipped.main(["--root", str(root)])
    return report + final_checks(root)


def final_checks(root: Path) -> list[str]:
    miou = recorded_miou(root)
    lines = []
    fcn = [miou.get(name) for name in ("fcn8s-synth", "fcn16s-synth", "fcn32s-synth")]
    if all(value is not None for value in fcn):
        holds = fcn[0] > fcn[1] > fcn[2]
        lines.append(f"FCN-8s > FCN-16s > FCN-32s: {'holds' if holds else 'DOES NOT hold'} ({fcn[0]} / {fcn[1]} / {fcn[2]})")
    weak = [name for name, value in miou.items() if name.endswith("-synth") and value <= ALL_BACKGROUND_MIOU]
    if weak:
        lines.append(f"at or below the all-background answer ({ALL_BACKGROUND_MIOU}): {', '.join(sorted(weak))}")
    folder = root / "segcli" / "weights"
    total = sum(path.stat().st_size for path in folder.rglob("*.safetensors")) / 1e6
    lines.append(f"shipped weights: {total:.1f} MB in all ({'under' if total < SHIPPED_LIMIT_MB else 'OVER'} "
                 f"the {SHIPPED_LIMIT_MB:.0f} MB limit)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files_at", type=Path, help="folder with results.tar.gz, weights-N.tar, SUMMARY.txt")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root [default: this checkout]")
    parser.add_argument("--force", action="store_true", help="install each stem's chosen lane even if it is worse")
    args = parser.parse_args(argv)
    for line in import_session(args.files_at.resolve(), args.root.resolve(), args.force):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
