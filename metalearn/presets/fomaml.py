"""First-order MAML (FOMAML) on Omniglot: MAML's settings, no second order.

Run:
  python experiments/train.py --config=experiments/configs/fomaml.py:5w1s \
      --workdir=runs/fomaml_5w1s

Paper (Finn et al. 2017, 5w1s first-order): 98.3 ± 0.5.
Measured: not yet at this size (docs/benchmarks.md).
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.maml(setting, algorithm="fomaml")
