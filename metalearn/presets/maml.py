"""Second-order MAML on Omniglot (Finn et al. 2017).

Run (setting one of 5w1s, 5w5s, 20w1s, 20w5s):
  python experiments/train.py --config=experiments/configs/maml.py:5w1s \
      --workdir=runs/maml_5w1s

Paper: 5w1s 98.7 ± 0.4, 5w5s 99.9 ± 0.1, 20w1s 95.8 ± 0.3, 20w5s 98.9 ± 0.2.
Measured: docs/benchmarks.md ("Reproduction"); the full schedules have not
run yet.
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.maml(setting, algorithm="maml")
