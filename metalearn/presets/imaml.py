"""iMAML (Rajeswaran et al. 2019) on Omniglot, gradient-descent inner loop.

Run (setting one of 5w1s, 5w5s, 20w1s, 20w5s):
  python experiments/train.py --config=imaml:5w1s --workdir=runs/imaml_5w1s

Paper (iMAML, GD): 5w1s 99.16 ± 0.35, 5w5s 99.67 ± 0.12, 20w1s 94.46 ±
0.42, 20w5s 98.69 ± 0.1. Memory against inner steps and accuracy on a CPU:
docs/benchmarks.md. Measured at this size: not yet.
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.imaml(setting)
