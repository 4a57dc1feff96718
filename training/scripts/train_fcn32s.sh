#!/usr/bin/env bash
# The shipped FCN-32s (segcli/weights/fcn32s-synth.safetensors), on the CPU, after FCN-8s/16s came from
# GPU session 1. Starting from all of fcn8s-synth left FCN-32s at the all-background answer (fcn8s-synth's
# conv5_3 and fc6 have no live ReLU: FCN-8s predicts through its skips), and so did lr 1e-3 from scratch,
# so FCN-32s starts from fcn8s-synth's conv1_1..conv5_2 only and trains at lr 3e-4 with a warm-up.
# About 45 minutes on one core of this 2-core machine; log: training/logs/fcn32s-cpu-from-fcn8s-trunk.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/tmp/segcli-synth-train-s1}
TEST=${TEST:-/tmp/segcli-synth-test-s2}
[ -f "$DATA/dataset.json" ] || python -m segcli data synth --out "$DATA" --n 2000 --seed 1 --size 128x128 --val-fraction 0.2
[ -f "$TEST/dataset.json" ] || python -m segcli data synth --out "$TEST" --n 300 --seed 2 --size 128x128 --val-fraction 1.0
python training/scripts/fcn32s_init.py /tmp/fcn32s-init.safetensors
OMP_NUM_THREADS=1 python -m segcli train --model fcn32s --data "$DATA" --weights /tmp/fcn32s-init.safetensors \
  --out segcli/weights/fcn32s-synth.safetensors --iters 4000 --batch-size 8 --crop 96x96 --scale-range 0.75,1.5 \
  --lr 3e-4 --warmup 100 --optimizer adamw --seed 11 --device cpu --precision fp32 --save-every 250 \
  --model-kwarg width=0.125 --overwrite
python -m segcli evaluate --model fcn32s --weights segcli/weights/fcn32s-synth.safetensors --data "$TEST" --split val \
  --device cpu --precision fp32 --json training/results/fcn32s-synth.eval.json
python training/scripts/register_shipped.py
