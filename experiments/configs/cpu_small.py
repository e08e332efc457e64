"""A small MAML config that learns for real on a 2-core CPU in minutes.

Run:
  python experiments/train.py --config=experiments/configs/cpu_small.py \
      --workdir=runs/cpu_small
Any algorithm: append ``:fomaml``, ``:mamlpp`` or ``:mamlpp_first_order``.
Measured (commit eda04a4, 2-core CPU, idle): 80.62% ± 1.67 on 200 test
tasks in 7 min 22 s for the whole command (docs/benchmarks.md).
"""

from experiments.configs import base
from experiments.configs import mamlpp


def get_config(algorithm: str = "maml"):
  c = mamlpp.get_config("5w1s") if "mamlpp" in algorithm else base.get_config()
  c.algorithm = algorithm
  c.n_way, c.k_shot, c.n_query = 5, 1, 5
  c.filters = 32
  c.meta_batch_size = 8
  c.inner_lr = 0.4 if "mamlpp" not in algorithm else 0.1
  c.inner_steps = 1 if "mamlpp" not in algorithm else 3
  c.eval_inner_steps = 3
  c.num_steps = 300
  c.iters_per_epoch = 30
  c.msl_epochs = 3 if "mamlpp" in algorithm else 0
  c.first_order_epochs = 0
  c.steps_per_call = 20
  c.eval_every = c.checkpoint_every = 100
  c.val_tasks = 50
  c.test_tasks = 200
  c.batching = "map"  # one task at a time: less memory on a small machine.
  return c
