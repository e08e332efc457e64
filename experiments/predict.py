r"""Adapts a trained run to labelled images and classifies new ones: see
:mod:`metalearn.commands.predict`.

  python experiments/predict.py --workdir=runs/maml_5w1s \
      --support_dir=my_support --query_dir=my_queries

The same code as the installed ``metalearn-predict`` command.
"""

from metalearn.commands import predict

if __name__ == "__main__":
  predict.run()
