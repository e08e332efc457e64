"""Reading a finished or running workdir: metrics, config, parameters.

What notebooks and the comparison need after ``train_and_evaluate``:
``read_metrics`` splits ``metrics.jsonl`` into training and validation
rows, ``restore`` rebuilds the experiment and loads the best (or latest)
meta-parameters.
"""

import json
from pathlib import Path
from typing import NamedTuple, Optional

import ml_collections

from metalearn import checkpoints
from metalearn import build
from metalearn.types import MetaParams


class Metrics(NamedTuple):
  """Rows of ``metrics.jsonl``, each a dict with a ``step``.

  Attributes:
    train: one row per compiled call: ``loss`` (the optimised meta-loss),
      ``last_step_loss``, ``accuracy``, ``tasks_per_s``, ...
    val: one row per validation: ``val_accuracy``, ``val_ci95``,
      ``val_loss``.
  """
  train: list
  val: list

  def column(self, name: str) -> tuple[list, list]:
    """``(steps, values)`` of one field, from whichever rows hold it."""
    rows = [r for r in self.train + self.val if name in r]
    rows.sort(key=lambda r: r["step"])
    return [r["step"] for r in rows], [r[name] for r in rows]


def read_metrics(workdir: str | Path) -> Metrics:
  """The metrics of a run; a torn last line (a killed writer) is skipped."""
  train_rows, val_rows = [], []
  path = Path(workdir) / "metrics.jsonl"
  for line in path.read_text().splitlines() if path.exists() else ():
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      continue
    (val_rows if "val_accuracy" in row else train_rows).append(row)
  return Metrics(train_rows, val_rows)


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
  """The config a run was started with (``workdir/config.json``)."""
  data = json.loads((Path(workdir) / "config.json").read_text())
  return ml_collections.ConfigDict(data)


class Restored(NamedTuple):
  """A run brought back: its config, experiment and meta-parameters."""
  config: ml_collections.ConfigDict
  experiment: build.Experiment
  meta: MetaParams
  step: int


def restore(workdir: str | Path, which: str = "best",
            config: Optional[ml_collections.ConfigDict] = None) -> Restored:
  """Loads the ``best`` (by validation; else the latest) or ``latest``
  meta-parameters of the run in ``workdir``."""
  if which not in ("best", "latest"):
    raise ValueError(f"which must be 'best' or 'latest'; got {which!r}.")
  config = config or read_config(workdir)
  exp = build.build_experiment(config)
  template = build.initial_state(config, exp)
  ckpt = checkpoints.Checkpointer(workdir)
  state = ckpt.restore_best(template) if which == "best" else None
  if state is None:
    state = ckpt.restore_latest(template)
  return Restored(config, exp, state.meta, int(state.step))
