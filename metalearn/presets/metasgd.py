"""Meta-SGD on Omniglot (Li et al. 2017).

Run (setting one of 5w1s, 5w5s, 20w1s, 20w5s):
  python experiments/train.py --config=experiments/configs/metasgd.py:5w1s \
      --workdir=runs/metasgd_5w1s

MAML's setting (Finn et al. 2017) with a learned inner rate for every
parameter element, meta-learned with the initialisation.

Paper: 5w1s 99.53 ± 0.26, 5w5s 99.93 ± 0.09, 20w1s 95.93 ± 0.38,
20w5s 98.97 ± 0.19.
Measured: not yet at this size (docs/benchmarks.md).
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.metasgd(setting)
