r"""Meta-trains and evaluates one config on Omniglot.

  python experiments/train.py --config=experiments/configs/maml.py:5w1s \
      --workdir=runs/maml_5w1s --config.num_steps=2000

Any config field can be overridden with ``--config.FIELD=VALUE``. Rerunning
with the same ``--workdir`` resumes from the latest checkpoint.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

from metalearn import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/configs/*.py[:arg]).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output and resume directory.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  # Orbax logs every checkpoint step at INFO; --verbosity=0 brings them back.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
