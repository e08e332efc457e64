"""ANIL (Raghu et al. 2020) with learned per-step inner rates on Omniglot.

Only the classifier head adapts in the inner loop (``inner_adapt="head"``):
the body's inner rates are ``None``, so the inner loop computes no gradient
for it, while the outer loop still trains it through the head's adaptation.
Everything else is the MAML++ config (multi-step loss, learned rates).

Run:
  python experiments/train.py --config=experiments/configs/anil.py:5w1s \
      --workdir=runs/anil_5w1s
Measured here: not yet on a GPU (see docs/benchmarks.md).
"""

from experiments.configs import mamlpp


def get_config(setting: str = "5w1s"):
  c = mamlpp.get_config(setting)
  c.algorithm = "mamlpp"
  c.inner_adapt = "head"
  c.per_step_bn = False
  return c
