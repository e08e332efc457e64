r"""Meta-trains and evaluates one config: see :mod:`metalearn.commands.train`.

  python experiments/train.py --config=experiments/configs/maml.py:5w1s \
      --workdir=runs/maml_5w1s --config.meta_steps=2000
  python experiments/train.py --config=maml:5w1s --workdir=runs/maml_5w1s

The same code as the installed ``metalearn-train`` command.
"""

from metalearn.commands import train

if __name__ == "__main__":
  train.run()
