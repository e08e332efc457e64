"""Proto-MAML (Triantafillou et al. 2020) on Omniglot: MAML's setting, the
head of each task starting from the support set's class prototypes.

Run (setting one of 5w1s, 5w5s, 20w1s, 20w5s):
  python experiments/train.py --config=protomaml:5w1s \
      --workdir=runs/protomaml_5w1s

Paper: reported on Meta-Dataset only, not for Omniglot N-way K-shot.
Against MAML on a CPU, same config, paired CI: docs/benchmarks.md.
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.protomaml(setting)
