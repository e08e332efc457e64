"""A small config that learns for real on a 2-core CPU in minutes.

Run:
  python experiments/train.py --config=experiments/configs/cpu_small.py \
      --workdir=runs/cpu_small
Any algorithm: append its name, e.g. ``:fomaml``, ``:mamlpp``,
``:mamlpp_first_order``, ``:anil``, ``:protomaml`` or ``:imaml``. The MAML++
family gets 3 inner steps at 0.1 (MAML++'s rate), the others 1 step at 0.4
(MAML's). ``:protonet`` trains 64 filters on 20-way episodes for ten
minutes and tests 5-way 1-shot on 600 tasks.
Measured: docs/benchmarks.md ("Training that learns on a CPU"; "ProtoNet on
Omniglot 5-way 1-shot").
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
  if algorithm == "protonet":
    # Snell et al.'s lever: training episodes wider than the test's (20-way
    # here, 60 in the paper), scored at 5-way; ten minutes of training.
    c.filters = 64
    c.inner_steps = c.eval_inner_steps = 1  # nothing adapts
    c.n_way, c.eval_n_way = 20, 5
    c.meta_batch_size = 2
    c.meta_steps, c.max_train_seconds = 100_000, 600
    c.eval_every, c.checkpoint_every = 500, 2_000
    c.val_tasks, c.test_tasks = 100, 600
  return c
