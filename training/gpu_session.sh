#!/usr/bin/env bash
# One GPU session in one command: (a) the CUDA tests, (b) `segcli benchmark --device cuda` at
# 512 and 1024, (c) time-boxed training lanes on synth scenes generated there, each evaluated on the
# held-out draw. Under 9 minutes on one H100/H200; everything lands under $OUT (at most 8 files):
# results.tar.gz, weights-N.tar, SUMMARY.txt. Import them with training/scripts/import_gpu_results.py.
#
#   bash training/gpu_session.sh                 # on the GPU machine
#   REHEARSAL=1 bash training/gpu_session.sh     # every stage on the CPU, tiny settings (tests run this)
#
# Settings (environment): OUT (default ./gpu-out), WORK (scratch, default /tmp/segcli-gpu-session),
# SESSION_SECONDS (550), LANES (comma list of lane names; the table is in training/scripts/gpu_lanes.py),
# TRAIN_SCENES (10000), PARALLEL (lanes at once; default all), LANE_RESERVE (60 s after each lane's training),
# ITERS_CAP (most iterations per lane), PYTEST_TIMEOUT (110), BENCHMARK_TIMEOUT (120).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" training/scripts/gpu_session.py "$@"
