"""Config validation: every bad field fails before anything compiles.

Each error names the field, the value and the valid range, e.g.
``config.inner_steps=0 is invalid: must be an integer >= 1``.
"""

import ml_collections

from metalearn import algorithms
from metalearn.data import SPLIT_NAMES
from metalearn.models.conv4 import CONV_IMPLS
from metalearn.precision import COMPUTE_DTYPES


LR_SCHEDULES = ("constant", "cosine")
MAX_DRAWINGS = 20  # Omniglot: 20 drawings of every character.


def _fail(field: str, value, valid: str) -> ValueError:
  return ValueError(f"config.{field}={value!r} is invalid: {valid}.")


def _int_at_least(config, field: str, low: int) -> None:
  value = config[field]
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise _fail(field, value, f"must be an integer >= {low}")


def _positive(config, field: str) -> None:
  value = config[field]
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      value > 0):
    raise _fail(field, value, "must be a number > 0")


def _one_of(config, field: str, names) -> None:
  if config[field] not in names:
    raise _fail(field, config[field], f"must be one of {', '.join(names)}")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field."""
  _one_of(config, "algorithm", tuple(algorithms.ALGORITHMS))
  _one_of(config, "dataset", SPLIT_NAMES)
  _one_of(config, "lr_schedule", LR_SCHEDULES)
  _one_of(config, "batching", ("vmap", "map"))
  _one_of(config, "conv_impl", CONV_IMPLS)
  _one_of(config, "compute_dtype", COMPUTE_DTYPES)
  for field in ("n_way", "k_shot", "n_query", "eval_n_query", "inner_steps",
                "eval_inner_steps", "meta_batch_size", "meta_steps",
                "steps_per_call", "steps_per_epoch", "filters", "test_tasks",
                "eval_chunk_size"):
    _int_at_least(config, field, 1)
  if config.n_way < 2:
    raise _fail("n_way", config.n_way, "must be an integer >= 2")
  for field in ("msl_epochs", "first_order_epochs", "eval_every",
                "checkpoint_every", "val_tasks", "train_pool", "seed"):
    _int_at_least(config, field, 0)
  for field in ("inner_lr", "outer_lr"):
    _positive(config, field)
  if not config.max_train_seconds >= 0:
    raise _fail("max_train_seconds", config.max_train_seconds,
                "must be >= 0 (0 = no limit)")
  if config.lr_schedule == "cosine":
    _positive(config, "outer_lr_min")
    if config.outer_lr_min > config.outer_lr:
      raise _fail("outer_lr_min", config.outer_lr_min,
                  f"must be in (0, outer_lr={config.outer_lr}]")
  for field, shots in (("n_query", config.k_shot + config.n_query),
                       ("eval_n_query", config.k_shot + config.eval_n_query)):
    if shots > MAX_DRAWINGS:
      raise _fail(field, config[field],
                  f"k_shot + {field} must be <= {MAX_DRAWINGS} (drawings per "
                  f"character); with k_shot={config.k_shot} the valid range "
                  f"is [1, {MAX_DRAWINGS - config.k_shot}]")
  if config.train_pool and config.train_pool < config.meta_batch_size:
    raise _fail("train_pool", config.train_pool,
                f"must be 0 (fresh tasks) or >= meta_batch_size="
                f"{config.meta_batch_size}")


def check_against_splits(config: ml_collections.ConfigDict, splits) -> None:
  """n_way must fit every split's class count (train counts rotations)."""
  train_classes = splits.train.shape[0] * (4 if config.rotate else 1)
  for name, classes in (("train", train_classes),
                        ("val", splits.val.shape[0]),
                        ("test", splits.test.shape[0])):
    if name == "val" and not config.val_tasks:
      continue
    if name == "val" and not classes:
      raise _fail("val_tasks", config.val_tasks,
                  f"the {config.dataset!r} split has no validation classes, "
                  "so val_tasks must be 0")
    if config.n_way > classes:
      raise _fail("n_way", config.n_way,
                  f"the {config.dataset!r} {name} split has {classes} "
                  f"classes, so the valid range is [2, {classes}]")
