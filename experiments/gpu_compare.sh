#!/usr/bin/env bash
# The prepared full-size comparison (issue 5) on one H100/H200: the
# write-up's protocol (Omniglot 5-way 1-shot, a fixed pool of 200 training
# tasks, 50 passes of 8-task meta-batches, 5 inner steps at lr 0.01, Adam
# 0.001, 100 test tasks with 15 query images per class) for MAML, FOMAML,
# MAML++ and first-order MAML++, each in its own process (--isolate), so
# each peak GPU memory is that algorithm's own.
#
# Prepare here once, as for experiments/gpu_reproduce.sh: the Omniglot cache
# in .cache/omniglot and the ml-collections wheel in .whl (not on the GPU
# image); carry both. Then, through the device tool (give it 600 s):
#   bash experiments/gpu_compare.sh            # writes into $OUT
# Writes $OUT/compare/{report.md,results.json,*.png} and $OUT/compare.log.
# Extra flags for experiments/compare.py go in COMPARE_ARGS. A mechanical
# dry run on a CPU (sizes shrunk, numbers meaningless):
#   OUT=/tmp/dry COMPARE_ARGS="--filters=4 --num_iterations=2 \
#     --test_tasks=4 --eval_chunk_size=4 --n_query=2 --eval_n_query=2" \
#     bash experiments/gpu_compare.sh
set -euo pipefail
. "$(dirname "$0")/gpu_env.sh"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  git rev-parse HEAD 2>/dev/null || cat .commit 2>/dev/null || true
} 2>&1 | tee "$OUT/compare.log"
# --full: the write-up's sizes even where no accelerator is found.
python3 experiments/compare.py --full --isolate --progress=false \
  --output_dir="$OUT/compare" ${COMPARE_ARGS:-} 2>&1 \
  | grep -v "^[IW][0-9]" | tee -a "$OUT/compare.log"
