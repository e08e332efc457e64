#!/usr/bin/env bash
# The prepared GPU benchmark: meta-step speed and memory of the library
# against the plain baseline, at Omniglot size.
#
# Prepare here once, as for experiments/gpu_reproduce.sh: the wheels in .whl
# (tqdm, which the trainer imports, is not on the GPU image); copy .whl to
# the GPU machine with the checkout.
# Then, from the repository root on an H100/H200 (estimated 6 minutes with
# compiles, not yet timed; allow it 10 minutes):
#
#   bash experiments/gpu_benchmark.sh            # writes into $OUT
#
# Writes $OUT/results.jsonl, $OUT/results.md (the table, also printed last)
# and $OUT/log.txt. Every row runs in its own process (--isolate, the
# default), so peak_bytes (device_peak_bytes_in_use) is that row's own; an
# out-of-memory row becomes an "error" row instead of ending the run. The
# workload: conv-4 with 64 filters, 5-way 1-shot, 15 query images per class,
# 5 inner steps, fp32 unless a row says bf16. Groups, most important first
# (an interrupted run keeps the finished groups):
#   1. MAML (second order), meta-batch 32: plain vs the library unrolled, with
#      shifted-matmul convolutions (+mm) and with bf16 compute.
#   2. FOMAML vs MAML at meta-batch 32.
#   3. MAML++: time per task vs MAML, memory with and without remat (its
#      multi-step-loss phase: the default --msl_epochs=10 x
#      --steps_per_epoch=500 covers every timed step).
#   4. The MAML++ paper setting (meta-batch 8, 1 query image per class): one
#      meta-step per dispatch vs 10 (steps_per_call).
#   5. Meta-batch growth 32 -> 128 -> 512 (MAML, plain vs tuned).
#   6. ResNet-12 (widths 64-160-320-640) on 84x84x3 colour images, 5-way
#      1-shot, 15 query, 5 inner steps, meta-batch 4: MAML vs FOMAML, time
#      and memory, without remat, with remat per inner step and with remat
#      per residual block (not yet run; its compiles alone may take several
#      minutes: skip it with SKIP_RESNET12=1).
#
# A mechanical dry run on a CPU (tiny model; numbers meaningless):
#   OUT=/tmp/gpu_dry BENCH_ARGS="--filters=2 --num_blocks=1 --warmup=1 \
#     --chunks=1 --steps_per_chunk=1 --widths=2,2,2,2 --image_size=16" \
#     bash experiments/gpu_benchmark.sh
set -euo pipefail
. "$(dirname "$0")/gpu_env.sh"
rm -f "$OUT/results.jsonl"
# Let an isolated row use most of the card (the default pool is 75%).
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
LOG="$OUT/log.txt"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import jax, flax, optax, absl; print('jax', jax.__version__, \
jax.devices())"
  git rev-parse HEAD 2>/dev/null || cat .commit 2>/dev/null \
    || echo "commit: (not a git checkout)"
} 2>&1 | tee "$LOG"

bench() {
  python3 experiments/benchmark.py --output_dir="$OUT" --append --filters=64 \
    --n_way=5 --k_shot=1 --n_query=15 --warmup=3 --chunks=5 "$@" \
    ${BENCH_ARGS:-} 2>&1 | tee -a "$LOG"
}

# 1. MAML 2nd order, meta-batch 32.
bench --algorithms=maml --meta_batch_sizes=32 --inner_steps=5 \
  --steps_per_chunk=10 \
  --modes=plain,tuned+unroll,tuned+unroll+mm,tuned+unroll+bf16,tuned+unroll+mm+bf16
# 2. FOMAML vs MAML (compare with group 1's rows).
bench --algorithms=fomaml --meta_batch_sizes=32 --inner_steps=5 \
  --steps_per_chunk=10 --modes=plain,tuned+unroll,tuned+unroll+mm
# 3. MAML++: multi-step loss, learned per-step per-layer rates, per-step BN.
bench --algorithms=mamlpp --meta_batch_sizes=32 --inner_steps=5 \
  --steps_per_chunk=5 --modes=plain,tuned+unroll,tuned+unroll+remat
# 4. The MAML++ paper setting: dispatch overhead and steps_per_call.
bench --algorithms=mamlpp --meta_batch_sizes=8 --n_query=1 --inner_steps=5 \
  --steps_per_chunk=20 --modes=plain,tuned+unroll,tuned+unroll+spc10
# 5. Meta-batch growth (32 is in group 1).
bench --algorithms=maml --meta_batch_sizes=128,512 --inner_steps=5 \
  --steps_per_chunk=4 --modes=plain,tuned+unroll
# 6. ResNet-12 at full size: is FOMAML essential for a large backbone?
if [[ "${SKIP_RESNET12:-0}" != 1 ]]; then
  bench --model=resnet12 --widths=64,160,320,640 --image_size=84 \
    --channels=3 --algorithms=maml,fomaml --meta_batch_sizes=4 \
    --inner_steps=5 --steps_per_chunk=4 \
    --modes=tuned,tuned+remat,tuned+blockremat
fi

echo "== all rows ==" | tee -a "$LOG"
cat "$OUT/results.md" | tee -a "$LOG"
