#!/bin/bash
# Checks experiments/predict.py on a real CPU-trained 5-way 1-shot MAML run
# and held-out ('vinyals' test split) Omniglot characters from the zips.
# usage: bash /tmp/predict_check/run.sh [NUM_SEEDS (default 10)]
set -euo pipefail
SEEDS=${1:-10}
HERE=/tmp/predict_check
RUN=/work/readme_clone/runs/compare/20261206-000834/maml
. /work/venv/bin/activate
export PYTHONPATH=/work/main
cd /work/main
# Work on a copy: the run's directory is never written.
rm -rf "$HERE/workdir" && cp -a "$RUN" "$HERE/workdir"
WD=$HERE/workdir
: > "$HERE/results.csv"
for seed in $(seq 0 $((SEEDS - 1))); do
  T=$HERE/tasks/seed$seed
  rm -rf "$T" "$T.bin"
  python "$HERE/prepare.py" "$seed" "$T"            # original 105x105 PNGs
  python "$HERE/prepare.py" "$seed" "$T.bin" --binary  # cache's 28x28 {0,1}
  for variant in invert noinvert invert_bnquery invert_binary; do
    args=(--workdir="$WD" --output_dir="$T/out_$variant")
    src=$T
    case $variant in
      invert) args+=(--invert) ;;
      noinvert) ;;
      invert_bnquery) args+=(--invert --batch_norm=query) ;;
      invert_binary) args+=(--invert); src=$T.bin ;;
    esac
    python experiments/predict.py "${args[@]}" --support_dir="$src/support" \
        --query_dir="$src/query" 2>&1 | tail -1
    acc=$(python "$HERE/score.py" "$src/labels.csv" \
          "$T/out_$variant/predictions.csv")
    echo "seed=$seed $variant $acc"
    echo "$seed,$variant,${acc##* }" >> "$HERE/results.csv"
  done
done
diff -r "$RUN" "$WD" > /dev/null && echo "run directory copy unchanged"
python - "$HERE/results.csv" <<'PY'
import csv, sys, collections, numpy as np
acc = collections.defaultdict(list)
for seed, variant, a in csv.reader(open(sys.argv[1])):
  acc[variant].append(float(a))
for v, a in acc.items():
  a = np.asarray(a)
  print(f"{v:15s} n={len(a)} mean={a.mean():.4f} std={a.std(ddof=1):.4f} "
        f"ci95=+-{1.96 * a.std(ddof=1) / np.sqrt(len(a)):.4f} "
        f"per-seed={' '.join(f'{x:.3f}' for x in a)}")
PY
# The run's own 400 test tasks (cache images, 15 queries per class): eval.json
# again via build.evaluate_meta, then predict.adapt_and_predict on each task
# with batch_norm='query' (eval's protocol) and 'support' (predict's default).
mkdir -p "$HERE/home/.cache/metalearn"
rm -rf "$HERE/home/.cache/metalearn/omniglot"
cp -a /tmp/emptyhome/.cache/metalearn/omniglot "$HERE/home/.cache/metalearn/"
HOME=$HERE/home python "$HERE/same_tasks.py" "$WD" 400 2>&1 | grep -v Warning
