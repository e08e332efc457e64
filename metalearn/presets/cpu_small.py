"""A small config that learns for real on a 2-core CPU in minutes.

Run:
  python experiments/train.py --config=experiments/configs/cpu_small.py \
      --workdir=runs/cpu_small
Any algorithm: append ``:fomaml``, ``:mamlpp``, ``:mamlpp_first_order`` or
``:anil``. The MAML++ family gets 3 inner steps at 0.1 (MAML++'s rate), the
others 1 step at 0.4 (MAML's).
Measured: docs/benchmarks.md ("Training that learns on a CPU").
"""

from metalearn import algorithms
from metalearn import configs


def get_config(algorithm: str = "maml"):
  plus_plus = algorithms.get(algorithm).plus_plus
  c = configs.mamlpp("5w1s", algorithm) if plus_plus else configs.base()
  c.algorithm = algorithm
  c.n_way, c.k_shot, c.n_query = 5, 1, 5
  c.filters = 32
  c.meta_batch_size = 8
  c.inner_lr = 0.1 if plus_plus else 0.4
  c.inner_steps = 3 if plus_plus else 1
  c.eval_inner_steps = 3
  c.meta_steps = 300
  c.steps_per_epoch = 30
  c.msl_epochs = 3
  c.first_order_epochs = 0
  c.steps_per_call = 20
  c.eval_every = c.checkpoint_every = 100
  c.val_tasks = 50
  c.test_tasks = 200
  c.batching = "map"  # one task at a time: less memory on a small machine.
  return c
