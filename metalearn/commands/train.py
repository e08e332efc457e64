r"""Meta-trains and evaluates one config (Omniglot, mini-ImageNet, sines).

  metalearn-train --config=maml:5w1s --workdir=runs/maml_5w1s \
      --config.meta_steps=2000
  python experiments/train.py --config=experiments/configs/sinusoid.py:maml:10 \
      --workdir=runs/sinusoid_maml_10

``--config`` is a preset's name (``metalearn/presets/``, also
``experiments/configs/``) or a config file's path, with an optional
``:argument``. Any config field can be overridden with
``--config.FIELD=VALUE``. Rerunning with the same ``--workdir`` resumes from
the latest checkpoint; Ctrl-C or SIGTERM saves one first.

The meta-batch is split over every local device (``--config.devices=1`` pins
one). Several processes (one per host or per GPU) run this same command with
``--coordinator_address=HOST0:PORT --num_processes=N --process_id=I`` (or
under SLURM / Open MPI with none of them); process 0 writes the outputs, the
workdir must be shared. See docs/scaling.md.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from metalearn import cli
from metalearn import commands
from metalearn import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A preset's name or a config file (NAME[:arg] or "
    "PATH.py[:arg]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output and resume directory.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  cli.run_main(lambda: train.train_and_evaluate(_CONFIG.value,
                                                _WORKDIR.value))


def run():
  """The ``metalearn-train`` console command."""
  commands.prepare_argv()
  app.run(main)
