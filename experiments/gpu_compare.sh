#!/usr/bin/env bash
# The prepared full-size comparison on one H100/H200: the write-up's protocol
# (experiments/configs/compare.py:full: Omniglot 5-way 1-shot, a fixed pool
# of 200 training tasks, 50 passes of 8-task meta-batches, 5 inner steps at
# lr 0.01, Adam 0.001, 600 test tasks with 15 query images per class) for
# MAML, FOMAML, MAML++ and first-order MAML++, each in its own process
# (--isolate), so each peak GPU memory is that algorithm's own.
#
# Prepare here once, as for experiments/gpu_reproduce.sh: the Omniglot cache
# in .cache/omniglot and the wheels in .whl (ml-collections and tqdm are not
# on the GPU image); copy both to the GPU machine with the checkout. Then
# (allow it 10 minutes; its time on a GPU has not been measured):
#   bash experiments/gpu_compare.sh            # writes into $OUT
# Writes $OUT/compare/{report.md,results.json,*.png} and $OUT/compare.log.
# Extra flags for experiments/compare.py go in COMPARE_ARGS. A mechanical
# dry run on a CPU (sizes shrunk, numbers meaningless):
#   OUT=/tmp/dry COMPARE_ARGS="--config.filters=4 --config.meta_steps=2 \
#     --config.test_tasks=4 --config.eval_chunk_size=4 --config.n_query=2 \
#     --config.eval_n_query=2" bash experiments/gpu_compare.sh
set -euo pipefail
. "$(dirname "$0")/gpu_env.sh"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  git rev-parse HEAD 2>/dev/null || cat .commit 2>/dev/null || true
} 2>&1 | tee "$OUT/compare.log"
# :full names the write-up's sizes, whatever backend is found.
python3 experiments/compare.py --config=experiments/configs/compare.py:full \
  --isolate --config.progress=False --output_dir="$OUT/compare" \
  ${COMPARE_ARGS:-} 2>&1 | grep -v "^[IW][0-9]" | tee -a "$OUT/compare.log"
