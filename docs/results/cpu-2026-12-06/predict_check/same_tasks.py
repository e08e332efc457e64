"""Reproduces eval.json's test number and scores predict.adapt_and_predict
on the very same 400 test tasks (cache images, 15 queries per class).
Run with HOME=/tmp/predict_check/home (a copy of the run's Omniglot cache)."""
import sys
import numpy as np
from metalearn import build, predict, runs, checkpoints
WD = sys.argv[1]
config = runs.read_config(WD)
exp = build.build_experiment(config)
found = predict.from_workdir(WD)
meta = checkpoints.Checkpointer(WD).restore_latest(build.initial_state(config, exp)).meta
res = build.evaluate_meta(config, exp, meta, exp.test_tasks)
print(f"evaluate: acc={res.accuracy:.4f} ci95={res.ci95:.4f} n={res.num_tasks}")
t = exp.test_tasks
print("task shapes", t.support_x.shape, t.query_x.shape)
n = int(sys.argv[2]) if len(sys.argv) > 2 else t.support_y.shape[0]
for mode in ("query", "support"):
  accs = []
  for i in range(n):
    p = predict.adapt_and_predict(found, t.support_x[i], np.asarray(t.support_y[i]),
                                  t.query_x[i], batch_norm=mode)
    accs.append(np.mean(np.asarray(p.labels) == np.asarray(t.query_y[i])))
  accs = np.asarray(accs)
  print(f"predict batch_norm={mode}: acc={accs.mean():.4f} "
        f"ci95={1.96 * accs.std() / np.sqrt(n):.4f} n={n}; "
        f"max |diff| vs evaluate per task: "
        f"{np.abs(accs - res.task_accuracy[:n]).max():.4f}")
