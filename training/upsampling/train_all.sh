#!/usr/bin/env bash
# Train the 15 compare-upsampling decoders (5 methods x seeds 0, 1, 2) in one process, one thread.
# Usage (from the repository root):
#   nohup training/upsampling/train_all.sh > training/upsampling/logs/train_all.log 2>&1 &
# Data: `segcli data synth --seed 7 --n 400` (320 train / 80 val scenes, 128x128; the encoder
# deeplabv3p-mobilenet-synth was trained on seed 1, the held-out test draw is seed 2024).
# The frozen encoder's features are cached once (data-cache/upsampling-synth-features-*.pt); each
# decoder: 1500 iterations of segcli.training.fit, batch 8, 64x64 crops aligned to stride 16,
# AdamW 3e-3 with poly decay, OHEM cross-entropy; val mIoU every 125 iterations (curves.json/.png).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PYTHON=${PYTHON:-python}
echo "$(date -u +%FT%TZ) start"
"$PYTHON" training/upsampling/train.py --data data-cache/upsampling-synth --n 400 --data-seed 7 \
  --seeds 0,1,2 --iterations 1500 --batch 8 --crop 64 --lr 3e-3 --eval-every 125 --threads 1 \
  --out segcli/weights/upsampling --curves training/upsampling/curves.json
echo "$(date -u +%FT%TZ) done"
