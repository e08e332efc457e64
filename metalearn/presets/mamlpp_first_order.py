"""First-order MAML++: every MAML++ component, first-order meta-gradient.

The write-up this project started from said this combination was not
implemented; here it is the MAML++ config with another algorithm name.

Run:
  python experiments/train.py \
      --config=experiments/configs/mamlpp_first_order.py:5w1s \
      --workdir=runs/mamlpp_fo_5w1s

Measured: not yet at this size (docs/benchmarks.md).
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.mamlpp(setting, algorithm="mamlpp_first_order")
