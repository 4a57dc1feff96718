#!/usr/bin/env bash
# The GPU check in one command: the execution policy (--precision auto on CUDA), real-sized benchmark
# rows (ResNet-50/101 DeepLabv3, FCN, DeepLabv3+, DeepLabv2 at 512x512, batch 1/8/32, fp32/bf16/fp16:
# img/s, TFLOP/s, share of the GPU's peak), the peak-memory rows, and folder throughput per schedule.
# Under 9 minutes on one H100/H200; writes $OUT/gpu-{check,policy,real,memory,lanes}-<card>.{json,md}
# and one log per step. Exit 0 only when every step succeeded (a skipped step is a failure).
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine (OUT defaults to benchmarks/)
#   REHEARSAL=1 OUT=/tmp/x bash benchmarks/gpu_check.sh   # every step on the CPU at toy sizes (tests run this)
#
# Settings (environment): OUT, REHEARSAL, SESSION_SECONDS (the whole check's budget: 530, rehearsal 2400), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
