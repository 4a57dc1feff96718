#!/usr/bin/env bash
# The exact commands that produce segcli's shipped checkpoints (weights/*-synth.safetensors).
#
#   training data : `segcli data synth --seed 1 --n 2000` (1600 train + 400 val scenes, 128x128)
#   held-out test : `segcli data synth --seed 2 --n 300 --val-fraction 1.0` (never seen in training)
#
# Usage: training/scripts/train_shipped.sh [MODEL ...]   (default: all shipped models, two at a time)
# Each run logs to training/logs/<model>.log; evaluation JSON goes to training/results/<checkpoint>.eval.json
# (then `python training/scripts/register_shipped.py` records them in the manifest and the README table).
# On a GPU, training/gpu_session.sh continues from these weights.
# Batch 8, random 96x96 crops of 128x128 scenes, one thread per run, two lanes. Safe to re-run after an
# interruption: a run resumes from its last state file. Weights already in weights/ that this script did
# not train here (a fresh clone's shipped ones) are only evaluated: delete them to retrain.
set -euo pipefail
cd "$(dirname "$0")/../.."

DATA=${DATA:-/tmp/segcli-synth-train-s1}
TEST=${TEST:-/tmp/segcli-synth-test-s2}
LOGS=training/logs
RESULTS=training/results
mkdir -p "$LOGS" "$RESULTS" weights

[ -f "$DATA/dataset.json" ] || python -m segcli data synth --out "$DATA" --n 2000 --seed 1 --size 128x128 --val-fraction 0.2
[ -f "$TEST/dataset.json" ] || python -m segcli data synth --out "$TEST" --n 300 --seed 2 --size 128x128 --val-fraction 1.0

# model | iterations | precision | builder options (recorded in the checkpoint)
# Budget: about 3.5 hours on 2 CPU cores (two lanes, one thread each): deeplabv3p's seven stages take
# about 3.5 hours in lane one; lane two trains the others one after another (deeplabv3-mobilenet
# about 80 minutes, each of the others 10-25 minutes).
declare -A ITERS=( [deeplabv3p]=3500 [deeplabv3-mobilenet]=1500 [lraspp]=1500 [fcn8s]=1500 [fcn32s]=1500
                   [deeplabv1]=1500 [deeplabv2]=1500 )
declare -A KWARGS=( [deeplabv3p]="" [deeplabv3-mobilenet]="" [lraspp]=""
                    [fcn8s]="--model-kwarg width=0.125" [fcn32s]="--model-kwarg width=0.125"
                    [deeplabv1]="--model-kwarg width=0.25" [deeplabv2]="--model-kwarg width=0.25 --model-kwarg depth=50" )
# bf16 autocast gives poor gradients for some models on this CPU (cosine similarity with the fp32
# gradients: 0.22 for deeplabv3p-mobilenet at initialisation, 0.09 for fcn32s from fcn8s's weights,
# whose bf16 run did not learn at all; 0.94 for lraspp, 0.99 for fcn8s), so those train in fp32.
declare -A PREC=( [deeplabv3p]=fp32 [deeplabv3-mobilenet]=fp32 [lraspp]=fp32 [fcn8s]=bf16 [fcn32s]=fp32
                  [deeplabv1]=bf16 [deeplabv2]=bf16 )
declare -A STEM=( [deeplabv3p]=deeplabv3p-mobilenet-synth [deeplabv3-mobilenet]=deeplabv3-mobilenet-synth
                  [lraspp]=lraspp-mobilenet-synth [fcn8s]=fcn8s-synth [fcn32s]=fcn32s-synth
                  [deeplabv1]=deeplabv1-synth [deeplabv2]=deeplabv2-synth )

# Later stages, "stage iterations lr seed threads init": each starts from `init`, or with "-" from the
# model's previous stage. A checkpoint of another model initialises the tensors both models share.
declare -A STAGES=(
  # 4000 iterations at lr 1e-3 (seed 1), 3000 at 5e-4 (seed 2, two threads: the other lane had
  # finished), 1000 at 1e-3 (seed 3), 11000 at 1e-3 (seed 4), 4000 at 5e-4 (seed 5), 6000 at 1e-3
  # (seed 6, two threads: lane two had finished)
  [deeplabv3p]="2 4000 1e-3 1 1 -;3 3000 5e-4 2 2 -;4 1000 1e-3 3 1 -;5 11000 1e-3 4 1 -;6 4000 5e-4 5 1 -;7 6000 1e-3 6 2 -"
  [deeplabv3-mobilenet]="2 12000 2e-3 1 1 -"
  [fcn8s]="2 2000 1e-3 1 1 -"
  # FCN-32s from scratch stayed at all-background in 1500 iterations: it starts again from FCN-8s's
  # stage-1 backbone and classifier, with the same 2000 iterations FCN-8s gets in its stage 2
  [fcn32s]="2 2000 1e-3 1 1 training/state/fcn8s-synth-stage1.safetensors"
  # LR-ASPP takes the MobileNetV3 backbone DeepLab v3 trained (same backbone, same data)
  [lraspp]="2 4000 1e-3 1 1 weights/deeplabv3-mobilenet-synth.safetensors"
)

train_one() {
  local model=$1 stem=${STEM[$1]}
  local state="training/state/$stem-${ITERS[$1]}.state.pt" resume=()
  if [ -f "weights/$stem.safetensors" ] && [ ! -f "training/state/$stem-stage1.done" ]; then
    echo "weights/$stem.safetensors exists and was not trained here: evaluating only (delete it to retrain)"
  else
    if [ ! -f "training/state/$stem-stage1.done" ]; then
      # an interrupted run continues exactly where its last state file left it (same batches, same schedule)
      [ -f "$state" ] && resume=(--resume "$state")
      # one thread each: two runs share the 2 cores
      OMP_NUM_THREADS=${THREADS:-1} python -m segcli train --model "$model" --data "$DATA" \
        --out "weights/$stem.safetensors" --overwrite --state "$state" "${resume[@]}" \
        --iters "${ITERS[$model]}" --batch-size 8 --crop 96x96 --lr 2e-3 --optimizer adamw --scale-range 0.75,1.5 \
        --seed 0 --device cpu --precision ${PREC[$model]} --save-every 200 ${KWARGS[$model]}
      cp "weights/$stem.safetensors" "training/state/$stem-stage1.safetensors"
      touch "training/state/$stem-stage1.done"
    fi
    local stages=() stage number iters lr seed threads init
    IFS=';' read -r -a stages <<< "${STAGES[$model]:-}"
    for stage in "${stages[@]}"; do
      read -r number iters lr seed threads init <<< "$stage"
      [ -f "training/state/$stem-stage$number.done" ] && continue
      if [ "$init" = "-" ]; then
        init="training/state/$stem-before-stage$number.safetensors"
        [ -f "$init" ] || cp "weights/$stem.safetensors" "$init"
      fi
      resume=(--weights "$init")
      [ -f "training/state/$stem-stage$number.state.pt" ] && resume=(--resume "training/state/$stem-stage$number.state.pt")
      OMP_NUM_THREADS=$threads python -m segcli train --model "$model" --data "$DATA" "${resume[@]}" \
        --out "weights/$stem.safetensors" --overwrite --state "training/state/$stem-stage$number.state.pt" --iters "$iters" \
        --batch-size 8 --crop 96x96 --lr "$lr" --optimizer adamw --scale-range 0.75,1.5 --seed "$seed" --device cpu \
        --precision ${PREC[$model]} --save-every 500 ${KWARGS[$model]}
      touch "training/state/$stem-stage$number.done"
    done
  fi
  python -m segcli evaluate --model "$model" --weights "weights/$stem.safetensors" --data "$TEST" \
      --split val --device cpu --precision fp32 --json "$RESULTS/$stem.eval.json"
}

# Two lanes, one per core: the long deeplabv3p run alone, the others one after another.
MODELS=("$@")
# lane two's order matters: fcn32s starts from fcn8s's stage 1, lraspp from deeplabv3-mobilenet
[ ${#MODELS[@]} -gt 0 ] || MODELS=(deeplabv3p deeplabv3-mobilenet fcn8s fcn32s lraspp)
lane_one=() lane_two=()
for model in "${MODELS[@]}"; do
  if [ "$model" = deeplabv3p ]; then lane_one+=("$model"); else lane_two+=("$model"); fi
done
run_lane() { for model in "$@"; do train_one "$model" >> "$LOGS/$model.log" 2>&1 || echo "$model failed"; done; }
run_lane "${lane_one[@]}" &
run_lane "${lane_two[@]}" &
wait
