"""A dataset and a model are one file each: registered from files outside
the package (``config.plugins``) and trained by name through
``experiments/train.py``."""

import json
from pathlib import Path
import subprocess
import sys

import pytest

from metalearn import config_checks
from metalearn import configs
from metalearn import plugins

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOYS = (str(HERE / "plugins" / "toy_dataset.py"),
        str(HERE / "plugins" / "toy_model.py"))


def test_a_toy_dataset_and_model_train_through_the_binary(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(REPO / "experiments" / "train.py"),
       "--config=cpu_small:fomaml", f"--config.plugins={TOYS!r}",
       "--config.dataset=toy_squares", "--config.model=toy_linear",
       "--config.rotate=false", "--config.n_way=3", "--config.n_query=2",
       "--config.eval_n_query=3", "--config.meta_batch_size=4",
       "--config.meta_steps=20", "--config.steps_per_call=10",
       "--config.eval_every=10", "--config.val_tasks=4",
       "--config.test_tasks=20", "--config.progress=false",
       "--nocompilation_cache", f"--workdir={tmp_path}"],
      capture_output=True, text=True, timeout=600, cwd=tmp_path,
      env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((tmp_path / "eval.json").read_text())
  assert summary["dataset"] == "toy_squares" and summary["meta_steps"] == 20
  # Each class is a patch at its own place: a linear model adapted on one
  # example per class is far above chance (1/3).
  assert summary["test"]["accuracy"] > 0.6, summary["test"]


def test_unknown_names_list_what_is_registered():
  config = configs.base()
  config.dataset = "toy_squares_typo"
  with pytest.raises(ValueError, match="config.dataset='toy_squares_typo' "
                     "is invalid: must be one of .*vinyals"):
    config_checks.validate_config(config)


def test_a_plugin_that_is_no_file_or_module_is_named():
  with pytest.raises(ValueError, match="config.plugins: 'nowhere/x.py'"):
    plugins.load(("nowhere/x.py",))
  with pytest.raises(ValueError, match="cannot import 'no_such_mod'"):
    plugins.load(("no_such_mod",))
  assert plugins.load(TOYS[:1]) == plugins.load(TOYS[:1])  # imported once
