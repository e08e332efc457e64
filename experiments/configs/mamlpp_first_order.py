"""First-order MAML++: every MAML++ component, first-order meta-gradient.

The write-up this project started from said this combination was not
implemented; here it is the MAML++ config with the order flag flipped.

Run:
  python experiments/train.py \
      --config=experiments/configs/mamlpp_first_order.py:5w1s \
      --workdir=runs/mamlpp_fo_5w1s

Measured here: not yet on a GPU (see docs/benchmarks.md).
"""

from experiments.configs import mamlpp


def get_config(setting: str = "5w1s"):
  c = mamlpp.get_config(setting)
  c.algorithm = "mamlpp_first_order"
  c.first_order_epochs = 0
  return c
