#!/usr/bin/env bash
# Evaluate the shipped compare-upsampling decoders on a fresh held-out draw (seed 2024, used in no
# training) and regenerate the result block of docs/UPSAMPLING.md from the JSON.
# Usage (from the repository root): training/upsampling/evaluate_heldout.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PYTHON=${PYTHON:-python}
DATA=data-cache/heldout-2024
RESULTS=training/upsampling/results
mkdir -p "$RESULTS"
[ -f "$DATA/dataset.json" ] || "$PYTHON" -m segcli data synth --out "$DATA" --n 48 --seed 2024 --val-fraction 1.0
# the trained decoders: 5 methods x 3 seeds on the frozen deeplabv3p-mobilenet-synth encoder
"$PYTHON" -m segcli compare-upsampling "$DATA" --out upsampling-out/heldout-2024 \
  --json "$RESULTS/heldout-seed2024.json" | tee "$RESULTS/heldout-seed2024.txt"
cp upsampling-out/heldout-2024/chart.png "$RESULTS/heldout-seed2024-chart.png"
# the --model path: training-free methods on the same encoder's full model's logits (stride 4)
"$PYTHON" -m segcli compare-upsampling "$DATA" --model deeplabv3p --weights deeplabv3p-mobilenet-synth \
  --out upsampling-out/heldout-2024-zoo --json "$RESULTS/heldout-seed2024-zoo-deeplabv3p.json" \
  | tee "$RESULTS/heldout-seed2024-zoo-deeplabv3p.txt"
"$PYTHON" training/upsampling/readme_results.py "$RESULTS/heldout-seed2024.json" \
  --zoo "$RESULTS/heldout-seed2024-zoo-deeplabv3p.json"
