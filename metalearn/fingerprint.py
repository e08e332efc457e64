"""A workdir belongs to one run: its config is recorded and checked on resume.

The first start writes ``workdir/config.json``; every start appends a line
``{"step": start step, "time": ..., "config": {...}, "changed": [...]}`` to
``workdir/starts.jsonl``, and rewrites ``config.json`` with the config in
effect. A resume compares every field of the new config with the recorded
one, before anything is built or restored:

* a field of :data:`TRAINING_FIELDS` (what is trained: the algorithm, the
  data, the model, the sizes, the rates, the seed, ...) that differs stops
  the run with one line, ``workdir runs/a was started with n_way=5; you
  asked for 10``, unless ``config.allow_config_change`` is set (from a
  binary: ``--config.allow_config_change=true``);
* a field of :data:`RUNTIME_FIELDS` (how it runs: progress bars, evaluation
  and checkpoint cadence, devices, time budget, directories, speed and
  memory switches, how many meta-steps) may change; each change is logged.

Every field of :func:`metalearn.configs.base` is in exactly one of the two
sets (``tests/test_workdir.py`` checks it). A field that is in neither (new
and not yet classified) counts as a training field; a field present on one
side only (added or removed by another version of metalearn) is logged and
not compared.
"""

import json
import logging
import os
from pathlib import Path
import time
from typing import Any, NamedTuple, Optional

import ml_collections

CONFIG_FILE = "config.json"
STARTS_FILE = "starts.jsonl"
ALLOW = "allow_config_change"

TRAINING_FIELDS = frozenset({
    # What is learned, and from what.
    "algorithm", "plugins", "dataset", "rotate", "augment", "n_way",
    "k_shot", "n_query", "min_n_way", "min_k_shot", "train_pool", "seed",
    "image_size", "channels", "split_fractions", "tfds_name",
    # The model and its loss.
    "model", "filters", "num_blocks", "widths", "hidden", "activation",
    "loss", "adapt_norm", "frozen", "compute_dtype",
    # Inner loop.
    "inner_steps", "inner_lr", "inner_optimizer", "inner_adam_lr",
    "reptile_inner", "reptile_adam_lr", "msl_epochs", "first_order_epochs",
    "imaml_lambda", "imaml_cg_steps", "imaml_cg_damping",
    # Outer loop.
    "meta_batch_size", "steps_per_epoch", "outer_optimizer", "outer_lr",
    "lr_schedule", "outer_lr_min",
    # Validation picks the best checkpoint(s); evaluation protocol. A
    # changed ensemble_top_k would mix top-k lists (checkpoints beyond the
    # old k are already gone).
    "val_tasks", "eval_n_query", "eval_n_way", "eval_k_shot",
    "eval_inner_steps", "ensemble_top_k",
})

RUNTIME_FIELDS = frozenset({
    ALLOW, "description", "data_dir", "cache_dir", "omniglot_dir",
    # How long and how often.
    "meta_steps", "max_train_seconds", "steps_per_call", "eval_every",
    "checkpoint_every", "test_tasks", "eval_chunk_size", "progress",
    # Speed and memory: the same computation.
    "devices", "remat", "block_remat", "unroll", "batching", "eval_batching",
    "conv_impl", "fast_head", "tile_params", "cpu_llvm_level",
    "compile_ahead",
})

log = logging.getLogger(__name__)


class ConfigChanged(ValueError):
  """A resume asked for a different run than the workdir holds."""


class Change(NamedTuple):
  """One field whose value differs from the recorded config."""
  field: str
  old: Any
  new: Any

  def __str__(self) -> str:
    return f"{self.field} {self.old!r} -> {self.new!r}"


def unclassified(config: ml_collections.ConfigDict) -> list[str]:
  """Fields of ``config`` in neither set, sorted."""
  return sorted(set(config.keys()) - TRAINING_FIELDS - RUNTIME_FIELDS)


def as_record(config: ml_collections.ConfigDict) -> dict:
  """``config`` as JSON values (tuples become lists), as recorded."""
  return json.loads(config.to_json_best_effort())


def compare(recorded: dict, config: dict) -> tuple[list[Change], list[Change]]:
  """(training changes, runtime changes) from ``recorded`` to ``config``.

  Both are JSON dicts (:func:`as_record`). Fields on one side only are
  runtime changes with ``None`` for the missing side; unclassified fields
  are training fields.
  """
  training, runtime = [], []
  for name in sorted(set(recorded) | set(config)):
    old, new = recorded.get(name), config.get(name)
    if name == ALLOW or old == new:
      continue
    one_sided = name not in recorded or name not in config
    kind = runtime if one_sided or name in RUNTIME_FIELDS else training
    kind.append(Change(name, old, new))
  return training, runtime


def _read_json(path: Path) -> Optional[dict]:
  try:
    data = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return data if isinstance(data, dict) else None


def _starts(workdir: Path) -> list[dict]:
  """The readable lines of ``starts.jsonl`` (a torn line is skipped)."""
  try:
    lines = (workdir / STARTS_FILE).read_text().splitlines()
  except OSError:
    return []
  out = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict) and isinstance(row.get("config"), dict):
      out.append(row)
  return out


def recorded(workdir: str | os.PathLike) -> Optional[dict]:
  """The config in effect at the workdir's last start, or None if none."""
  workdir = Path(workdir)
  config = _read_json(workdir / CONFIG_FILE)
  if config is None:
    starts = _starts(workdir)
    config = starts[-1]["config"] if starts else None
  return config


def starts(workdir: str | os.PathLike) -> list[dict]:
  """Every recorded start, oldest first: ``{"step", "time", "config",
  "changed"}``."""
  return _starts(Path(workdir))


def _refusal(workdir: Path, changes: list[Change]) -> str:
  was = ", ".join(f"{c.field}={c.old!r}" for c in changes)
  if len(changes) == 1:
    asked = repr(changes[0].new)
  else:
    asked = ", ".join(f"{c.field}={c.new!r}" for c in changes)
  return (f"workdir {workdir} was started with {was}; you asked for {asked}. "
          "Nothing was changed: use another --workdir, or set "
          f"{ALLOW}=True (--config.{ALLOW}=true) if the change is meant.")


def check_resume(workdir: str | os.PathLike,
                 config: ml_collections.ConfigDict) -> list[Change]:
  """Compares ``config`` with the workdir's recorded config.

  Args:
    workdir: the run directory (it may be new).
    config: the config asked for now.

  Returns:
    The changes accepted (runtime ones, and training ones when
    ``config.allow_config_change``); each was logged. Empty for a new
    workdir.

  Raises:
    ConfigChanged: a training field differs and the change was not allowed;
      the message lists old and new values.
  """
  workdir = Path(workdir)
  old = recorded(workdir)
  if old is None:
    return []
  training, runtime = compare(old, as_record(config))
  allowed = bool(config.get(ALLOW, False))
  if training and not allowed:
    raise ConfigChanged(_refusal(workdir, training))
  for change in training:
    log.warning("workdir %s: %s changed by request (%s=True): %s", workdir,
                change.field, ALLOW, change)
  for change in runtime:
    log.info("workdir %s: %s", workdir, change)
  return training + runtime


def _write_atomic(path: Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def record_start(workdir: str | os.PathLike,
                 config: ml_collections.ConfigDict, step: int,
                 changes: list[Change] = ()) -> None:
  """Writes ``config.json`` and appends this start to ``starts.jsonl``."""
  workdir = Path(workdir)
  _write_atomic(workdir / CONFIG_FILE, config.to_json_best_effort(indent=2))
  row = {"step": int(step), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
         "config": as_record(config),
         "changed": [str(c) for c in changes]}
  path = workdir / STARTS_FILE
  torn = path.exists() and not path.read_bytes().endswith(b"\n") and (
      path.stat().st_size > 0)
  with open(path, "a", encoding="utf-8") as f:
    f.write(("\n" if torn else "") + json.dumps(row) + "\n")
