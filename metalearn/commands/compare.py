r"""Trains MAML, FOMAML, MAML++ and first-order MAML++ side by side.

  python experiments/compare.py
  metalearn-compare --config=compare:full
  python experiments/compare.py --config=experiments/configs/cpu_small.py \
      --algorithms=maml,fomaml --config.meta_steps=200 --output_dir=runs/cmp

Takes ``--config`` and ``--config.FIELD=VALUE`` as ``experiments/train.py``
does; every algorithm runs that config with its ``algorithm`` field set. The
default config is the CPU-sized protocol without an accelerator and the
write-up's full protocol with one (experiments/configs/compare.py). Writes
report.md, results.json, PNG plots and one workdir per algorithm to
``--output_dir`` (default ``runs/compare/<date-time>``). Devices and several
processes as for ``experiments/train.py`` (docs/scaling.md).
"""

import os
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from metalearn import algorithms
from metalearn import cli
from metalearn import commands
from metalearn import compare
from metalearn import presets

_DEFAULT_CONFIG = str(presets.FOLDER / "compare.py")
_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "A preset's name or a config file (NAME[:arg] "
    "or PATH.py[:arg]); its algorithm field is set per algorithm.", lock_config=False)
_ALGORITHMS = flags.DEFINE_list(
    "algorithms", list(algorithms.COMPARED),
    f"Any of {', '.join(algorithms.ALGORITHMS)}, run in this order.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the report goes (default "
    "runs/compare/<date-time>).")
_ISOLATE = flags.DEFINE_bool(
    "isolate", False, "One process per algorithm (its own memory peak).")


def _spec() -> str:
  """The config as given on the command line, overrides included."""
  given = [a.split("=", 1)[1] for a in sys.argv[1:]
           if a.startswith("--config=")]
  path, _, arg = (given[-1] if given else _DEFAULT_CONFIG).partition(":")
  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  extra = "".join(f" --config.{k}={v}" for k, v in overrides.items())
  path = os.path.abspath(path)
  if path.startswith(str(presets.FOLDER) + os.sep):
    path = os.path.splitext(os.path.basename(path))[0]  # the preset's name
  return path + (f":{arg}" if arg else "") + extra


def main(argv):
  del argv
  output_dir = _OUTPUT_DIR.value or os.path.join(
      "runs", "compare", time.strftime("%Y%m%d-%H%M%S"))
  print(f"Output: {output_dir}", flush=True)

  def run():
    compare.run_comparison(
        _CONFIG.value, _ALGORITHMS.value, output_dir, spec=_spec(),
        isolate=_ISOLATE.value, command=" ".join(sys.argv))
    print(f"Output: {output_dir}")
  cli.run_main(run)


def run():
  """The ``metalearn-compare`` console command."""
  commands.prepare_argv()
  app.run(main)
