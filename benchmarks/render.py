"""Regenerate the tables of docs/BENCHMARKS.md from the JSON records they name.

    python benchmarks/render.py                 # rewrite every block of docs/BENCHMARKS.md
    python benchmarks/render.py --check         # exit 1 if a block differs from what its JSON gives

A block is the text between `<!-- render: benchmarks/NAME.json -->` and `<!-- end render -->`; what
lies between is replaced by a table made from that file (paths relative to the repository root).
Two kinds of record are understood: `segcli benchmark --json` (a `rows` list) and
`benchmarks/onnx_vs_torch.py --json` (a `results` list). Nothing in a block is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from segcli.atomic import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- render: (?P<source>\S+\.json) -->\n)(?P<body>.*?)(<!-- end render -->)", re.S)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _machine(environment: dict) -> str:
    gpu = environment.get("gpu")
    where = gpu if gpu and environment.get("device") == "cuda" else \
        f"{environment.get('cpu', 'a CPU')}, {environment.get('cpu_count', '?')} cores"
    threads = environment.get("torch_threads", environment.get("threads"))
    return f"{where}; torch {environment.get('torch', '?')}, {threads} torch thread(s)"


def benchmark_table(record: dict) -> list[str]:
    """`segcli benchmark --json`: model-only mean latency per batch and the ratio to the bare model."""
    rows = record["rows"]
    lines = [f"Machine: {_machine(record['environment'])}; batch {rows[0]['batch']}, "
             f"{rows[0]['warmup']} warm-up + {rows[0]['iters']} timed calls per row.", "",
             "| model | checkpoint | size | precision | mean ms | p50 ms | img/s | peak MB | time vs bare fp32 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        precision = "fp32 bare" if row["variant"] == "baseline" else \
            row["precision"] + (" CL" if row["channels_last"] else "")
        lines.append(f"| {row['model']} | {row['weights']} | {row['size']} | {precision} | {_ms(row['mean_ms'])} | "
                     f"{_ms(row['p50_ms'])} | {row['images_per_s']:,.1f} | {_ms(row['peak_memory_mb'])} | "
                     f"{_ratio(row['time_vs_baseline'])} |")
    return lines


def onnx_table(record: dict) -> list[str]:
    """`benchmarks/onnx_vs_torch.py --json`: median ms per image of each runtime, and label agreement."""
    environment, results = record["environment"], record["results"]
    names = list(results[0]["median_ms"])
    load = environment.get("load_average_after") or [None, None]
    lines = [f"Command: `{environment['command']}`; {environment['threads']} thread(s) of "
             f"{environment['cpu_count']} cores, load average (5 min) after the run "
             f"{'-' if load[1] is None else f'{load[1]:.1f}'}; torch {environment['torch']}, onnxruntime "
             f"{environment.get('onnxruntime', '-')}.", "",
             "| checkpoint | " + " | ".join(f"{name} ms" for name in names) + " | fastest | onnxruntime labels = fp32 |",
             "|---|" + "---|" * (len(names) + 2)]
    for result in results:
        medians = result["median_ms"]
        cells = [_ms(medians[name]) for name in names]
        agreement = result["agreement_vs_fp32"].get("onnxruntime")
        lines.append(f"| {result['checkpoint']} | " + " | ".join(cells) + f" | {min(medians, key=medians.get)} | "
                     + ("-" if agreement is None else f"{100 * agreement:.2f}%") + " |")
    return lines


def render(source: str, root: Path = ROOT) -> str:
    record = json.loads((root / source).read_text())
    if "rows" in record:
        lines = benchmark_table(record)
    elif "results" in record and "median_ms" in record["results"][0]:
        lines = onnx_table(record)
    else:
        raise ValueError(f"{source}: not a record render.py understands (no `rows`, no `results` of medians)")
    return "\n".join(lines) + "\n"


def rewrite(text: str, root: Path = ROOT) -> str:
    return BLOCK.sub(lambda match: match.group(1) + render(match.group("source"), root) + match.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    args = parser.parse_args(argv)
    text = args.doc.read_text()
    updated = rewrite(text)
    if args.check:
        if updated != text:
            print(f"{args.doc}: a block differs from its JSON (run python benchmarks/render.py)")
            return 1
        return 0
    atomic_write_bytes(args.doc, updated.encode())
    print(f"rewrote {len(BLOCK.findall(text))} block(s) of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
