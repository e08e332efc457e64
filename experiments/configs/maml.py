"""Second-order MAML on Omniglot (Finn et al. 2017).

Run (setting one of 5w1s, 5w5s, 20w1s, 20w5s):
  python experiments/train.py --config=experiments/configs/maml.py:5w1s \
      --workdir=runs/maml_5w1s

Paper: 5w1s 98.7 ± 0.4, 5w5s 99.9 ± 0.1, 20w1s 95.8 ± 0.3, 20w5s 98.9 ± 0.2.
Measured: 5w1s on one H200, 90 s of training (12,700 of the 60,000 steps):
98.12% ± 0.26 (docs/benchmarks.md); full schedules not run yet.
"""

from experiments.configs import base


def get_config(setting: str = "5w1s"):
  c = base.apply_maml_setting(base.get_config(), setting)
  c.algorithm = "maml"
  return c
