#!/usr/bin/env bash
# Provenance record, not a script to run: the script that produced the other
# files in this folder, on one NVIDIA H200 (jax 0.11.2, CUDA) on 2026-11-26,
# from the code of commit 9627d70 plus the files committed next in 2be5c10.
# It ran from the repository root as experiments/gpu_session.sh with
#   BENCH_SECONDS=190 TRAIN_SECONDS=90 bash experiments/gpu_session.sh
# Its flags are as of that commit and have since been renamed: benchmark
# --n_ways/--k_shots/--n_queries -> --n_way/--k_shot/--n_query; config
# fields num_steps -> meta_steps, iters_per_epoch -> steps_per_epoch. The
# results are in docs/benchmarks.md ("H200, 2026-11-26").
#
# What it did (about 9 minutes): the benchmark's key rows (conv-4 with 64
# filters, 5-way 1-shot, 15 query images per class, 5 inner steps), then
# MAML and MAML++ 5-way 1-shot trained under a time budget and tested on 600
# tasks. Had .cache and .whl beside it as experiments/gpu_reproduce.sh says; copied
# its result files into $OUT after each phase, so that a run cut off by the
# time limit still returned what finished.
set -uo pipefail
OUT="${OUT:-/tmp/metalearn-gpu}"; WORK=/tmp/metalearn-work
mkdir -p "$OUT" "$WORK"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
export METALEARN_CACHE_DIR="${METALEARN_CACHE_DIR:-.cache/omniglot}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
{ nvidia-smi --query-gpu=name,memory.total --format=csv
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  cat .commit 2>/dev/null || git rev-parse HEAD 2>/dev/null; } > "$OUT/machine.txt" 2>&1
BENCH_SECONDS="${BENCH_SECONDS:-210}"; TRAIN_SECONDS="${TRAIN_SECONDS:-110}"
bench() {
  timeout "$1" python3 experiments/benchmark.py --output_dir="$WORK/bench" \
    --append --filters=64 --n_ways=5 --k_shots=1 --n_queries=15 \
    --warmup=3 --chunks=5 "${@:2}" ${BENCH_EXTRA:-} 2>&1 | grep -v "^[IW][0-9]" >> "$WORK/bench.log"
  cp "$WORK/bench/results.md" "$WORK/bench/results.jsonl" "$OUT/" 2>/dev/null
}
start=$SECONDS
# The workload: 5 inner steps, meta-batch 32; plain is the baseline.
bench 110 --algorithms=maml,fomaml,mamlpp --meta_batch_sizes=32 \
  --inner_steps=5 --steps_per_chunk=5 --modes=plain,tuned
left=$(( BENCH_SECONDS - (SECONDS - start) ))
bench $(( left > 20 ? left : 20 )) --algorithms=maml --meta_batch_sizes=8 \
  --inner_steps=5 --steps_per_chunk=20 --modes=tuned+spc10,tuned+remat
cp "$WORK/bench.log" "$OUT/bench.log"
train() {  # name config [flags]
  python3 experiments/train.py --config="$2" --workdir="$WORK/$1" \
    --config.progress=False --config.max_train_seconds="$TRAIN_SECONDS" \
    --config.val_tasks=100 "${@:3}" ${TRAIN_EXTRA:-} 2>&1 | grep -v "^[IW][0-9]" > "$WORK/$1.log"
  tail -n 8 "$WORK/$1.log" >> "$OUT/train.log"
  python3 - "$WORK/$1" "$OUT/$1.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1] + "/eval.json"))
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
d["train_rows"] = [r for r in rows if "loss" in r][-3:]
json.dump(d, open(sys.argv[2], "w"), indent=1)
PY
}
train maml_5w1s experiments/configs/maml.py:5w1s --config.steps_per_call=100 \
  --config.eval_every=60000 --config.checkpoint_every=60000
train mamlpp_5w1s experiments/configs/mamlpp.py:5w1s --config.num_steps=10000 \
  --config.iters_per_epoch=100 --config.steps_per_call=100 \
  --config.eval_every=10000 --config.checkpoint_every=10000
echo "total $(( SECONDS - start )) s" >> "$OUT/train.log"
