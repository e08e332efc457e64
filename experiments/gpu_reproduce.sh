#!/usr/bin/env bash
# The prepared GPU reproduction run: the papers' 5-way 1-shot configs (MAML,
# MAML++) on one H100/H200.
#
# Prepare here (CPU machine), once:
#   python -m metalearn.data.prepare --cache_dir=.cache/omniglot   # git-ignored
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 --platform any \
#     -d .whl ml-collections tqdm            # not on the GPU image
# Then on the GPU machine, with .cache and .whl copied there with the checkout:
#   bash experiments/gpu_reproduce.sh      (writes into $OUT)
# Each config is capped at STEPS_MAML / STEPS_MAMLPP meta-steps so that the
# whole script fits one 10-minute call; set STEPS_MAML=60000
# STEPS_MAMLPP=50000 for the papers' full schedules.
set -euo pipefail
. "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
{ git rev-parse HEAD 2>/dev/null || cat .commit 2>/dev/null || true; } \
  | tee "$OUT/commit.txt"
STEPS_MAML="${STEPS_MAML:-20000}"
STEPS_MAMLPP="${STEPS_MAMLPP:-20000}"
run() {  # name config meta_steps [extra flags]
  local start=$SECONDS
  python3 experiments/train.py --config="$2" --workdir="$OUT/$1" \
    --config.meta_steps="$3" --config.progress=False "${@:4}" \
    --config.eval_every="$3" --config.checkpoint_every="$3" \
    2>&1 | grep -v "^[IW][0-9]" | tee "$OUT/$1.log"
  echo "$1: $(( SECONDS - start )) s wall for $3 meta-steps" | tee -a "$OUT/times.txt"
}
run maml_5w1s experiments/configs/maml.py:5w1s "$STEPS_MAML"
# MAML++'s schedule is in epochs (100 of them): shrink epochs with the steps.
run mamlpp_5w1s experiments/configs/mamlpp.py:5w1s "$STEPS_MAMLPP" \
  --config.steps_per_epoch=$(( STEPS_MAMLPP / 100 ))
