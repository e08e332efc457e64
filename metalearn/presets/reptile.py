"""Reptile on Omniglot (Nichol et al. 2018).

Run (setting one of 5w1s, 5w5s, 20w1s, 20w5s):
  python experiments/train.py --config=experiments/configs/reptile.py:5w1s \
      --workdir=runs/reptile_5w1s

No meta-gradient: each meta-step adapts to 5 tasks with 5 inner Adam steps
and moves the initialisation towards the adapted weights with outer SGD
(step size 1.0 annealed linearly to 0); see ``metalearn.configs.reptile``
for where this differs from the paper.

Paper (Table 1, transductive, as our batch norm is): 5w1s 97.68 ± 0.04,
5w5s 99.48 ± 0.06, 20w1s 89.43 ± 0.14, 20w5s 97.12 ± 0.32.
Measured: not yet at this size (docs/benchmarks.md).
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.reptile(setting)
