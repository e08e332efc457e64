"""Prototypical networks (Snell et al. 2017) on Omniglot.

Run (setting one of 5w1s, 5w5s, 20w1s, 20w5s; training episodes are
60-way at the setting's shot, testing at its way and shot):
  python experiments/train.py --config=protonet:5w1s \
      --workdir=runs/protonet_5w1s

Paper: 5w1s 98.8, 5w5s 99.7, 20w1s 96.0, 20w5s 98.9.
On a CPU in ten minutes: ``cpu_small:protonet`` (docs/benchmarks.md,
"ProtoNet on Omniglot"). Measured at this size: not yet.
"""

from metalearn import configs


def get_config(setting: str = "5w1s"):
  return configs.protonet(setting)
