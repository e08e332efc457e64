#!/usr/bin/env bash
# The prepared GPU reproduction run (issue 4): paper configs on one H100/H200.
#
# Prepare here (CPU machine), once:
#   python -m metalearn.data.prepare --cache_dir=.cache/omniglot   # git-ignored
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 --platform any \
#     -d .whl ml-collections tqdm            # not on the GPU image
# Run through the device tool, carrying .cache and .whl:
#   bash experiments/gpu_reproduce.sh      (writes into $OUT)
# Each config is capped by STEPS (meta-steps) so the whole script fits one
# 10-minute call; set STEPS=60000 / 50000 for the papers' full schedules.
set -euo pipefail
. "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
git rev-parse HEAD 2>/dev/null | tee "$OUT/commit.txt" || true
STEPS_MAML="${STEPS_MAML:-20000}"
STEPS_MAMLPP="${STEPS_MAMLPP:-20000}"
run() {  # name config steps [extra flags]
  local start=$SECONDS
  python3 experiments/train.py --config="$2" --workdir="$OUT/$1" \
    --config.num_steps="$3" --config.progress=False "${@:4}" \
    --config.eval_every="$3" --config.checkpoint_every="$3" \
    2>&1 | grep -v "^[IW][0-9]" | tee "$OUT/$1.log"
  echo "$1: $(( SECONDS - start )) s wall for $3 meta-steps" | tee -a "$OUT/times.txt"
}
run maml_5w1s experiments/configs/maml.py:5w1s "$STEPS_MAML"
# MAML++'s schedule is in epochs (100 of them): shrink epochs with the steps.
run mamlpp_5w1s experiments/configs/mamlpp.py:5w1s "$STEPS_MAMLPP" \
  --config.iters_per_epoch=$(( STEPS_MAMLPP / 100 ))
