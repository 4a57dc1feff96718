#!/usr/bin/env bash
# Train the five compare-upsampling decoders one after another, identically except for the method.
# Usage (from the repository root):  nohup training/upsampling/train_all.sh > training/upsampling/train_all.log 2>&1 &
# Each run: 1500 iterations, batch 8, 64x64 crops (scale 0.5-1.0, flips), Adam 3e-3 poly, seed 0,
# on 480 train / 120 val synth scenes (128x128, data seed 7); a few minutes each on one CPU thread.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=data-cache/upsampling-synth
LOGS=training/upsampling
for METHOD in nearest bilinear transposed-fixed transposed-learned unpool; do
  echo "$(date -u +%FT%TZ) start $METHOD"
  python training/upsampling/train.py --method "$METHOD" --data "$DATA" --n 600 --data-seed 7 \
    --out weights/upsampling --iterations 1500 --batch 8 --crop 64 --scale-min 0.5 --scale-max 1.0 \
    --lr 3e-3 --seed 0 --threads 1 > "$LOGS/train-$METHOD.log" 2>&1
  echo "$(date -u +%FT%TZ) done $METHOD: $(grep '^{' "$LOGS/train-$METHOD.log")"
done
