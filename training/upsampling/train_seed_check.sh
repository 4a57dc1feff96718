#!/usr/bin/env bash
# Seed-noise check: retrain all five decoders exactly as train_all.sh does but with another seed
# (init, batches and augmentation), into data-cache/ (not shipped). Usage: train_seed_check.sh SEED
set -euo pipefail
cd "$(dirname "$0")/../.."
SEED=${1:?usage: train_seed_check.sh SEED}
DATA=data-cache/upsampling-synth
OUT=data-cache/upsampling-seed$SEED
LOGS=training/upsampling/seed$SEED
mkdir -p "$LOGS"
for METHOD in nearest bilinear transposed-fixed transposed-learned unpool; do
  echo "$(date -u +%FT%TZ) start $METHOD (seed $SEED)"
  python training/upsampling/train.py --method "$METHOD" --data "$DATA" --n 600 --data-seed 7 \
    --out "$OUT" --iterations 1500 --batch 8 --crop 64 --scale-min 0.5 --scale-max 1.0 \
    --lr 3e-3 --seed "$SEED" --threads 1 > "$LOGS/train-$METHOD.log" 2>&1
  echo "$(date -u +%FT%TZ) done $METHOD: $(grep '^{' "$LOGS/train-$METHOD.log")"
done
