"""ANIL (Raghu et al. 2020) with MAML++'s schedule on Omniglot.

Only the classifier head adapts in the inner loop (the ``anil`` algorithm:
the body's inner rates are ``None``, so the inner loop computes no gradient
for it), while the outer loop still trains the body through the head's
adaptation. Multi-step loss and learned rates as in MAML++; one shared
batch-norm affine.

Run:
  python experiments/train.py --config=experiments/configs/anil.py:5w1s \
      --workdir=runs/anil_5w1s
Measured: not yet at this size (docs/benchmarks.md).
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  config = configs.mamlpp(setting, algorithm="anil")
  config.ensemble_top_k = 1  # ANIL reports its single best checkpoint.
  return config
