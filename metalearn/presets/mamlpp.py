"""MAML++ on Omniglot (Antoniou et al. 2019, "How to train your MAML").

Run (setting one of 5w1s, 5w5s, 20w1s, 20w5s):
  python experiments/train.py --config=experiments/configs/mamlpp.py:5w1s \
      --workdir=runs/mamlpp_5w1s

The algorithm (metalearn.algorithms) brings the multi-step loss, learned
per-layer per-step inner rates and per-step batch norm; the config sets
their schedule: multi-step loss annealed over 10 epochs, first order for the
first 50 (derivative-order annealing), cosine outer rate 1e-3 -> 1e-5, 100
epochs x 500 meta-steps, meta-batch 8, 5 inner steps at 0.1, 1150/50/423
split.

Paper: 5w1s 99.47, 5w5s 99.93, 20w1s 97.65, 20w5s 99.33, with an ensemble
of the 5 checkpoints best on validation: ``eval.json``'s ``test_ensemble``
(``ensemble_top_k = 5``); its ``test`` is the single best checkpoint.
Measured: docs/benchmarks.md ("Reproduction"); the full 50,000-step
schedule has not run yet.
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.mamlpp(setting, algorithm="mamlpp")
