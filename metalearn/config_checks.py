"""Config validation: every bad field fails before anything compiles.

Each error names the field, the value and the valid range, e.g.
``config.inner_steps=0 is invalid: must be an integer >= 1``.

The dataset and the model are looked up in their registries
(:mod:`metalearn.data.registry`, :mod:`metalearn.models.registry`), which
check the fields that only they know; ``config.plugins`` are imported first,
so that a user's dataset or model file can register itself.
"""

import ml_collections

from metalearn import algorithms
from metalearn import objectives
from metalearn import plugins
from metalearn import rules
from metalearn import task_copies
from metalearn.data import augment
from metalearn.data import registry as datasets
from metalearn.data import shapes
from metalearn.evaluate import BATCHINGS
from metalearn.models import registry as models
from metalearn.models.conv4 import CONV_IMPLS
from metalearn.precision import COMPUTE_DTYPES

LR_SCHEDULES = ("constant", "cosine", "linear")


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


def _at_least_zero(config, field: str) -> None:
  value = config[field]
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      value >= 0):
    raise _fail(field, value, "must be a number >= 0")


def _one_of(config, field: str, names) -> None:
  if config[field] not in names:
    raise _fail(field, config[field], f"must be one of {', '.join(names)}")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field."""
  plugins.load(config.get("plugins", ()))
  _one_of(config, "algorithm", tuple(algorithms.ALGORITHMS))
  dataset = datasets.get(config.dataset)
  _one_of(config, "lr_schedule", LR_SCHEDULES)
  _check_model_and_loss(config)
  _one_of(config, "batching", ("vmap", "map"))
  _one_of(config, "eval_batching", BATCHINGS)
  _one_of(config, "conv_impl", CONV_IMPLS)
  if "tile_params" in config:
    _one_of(config, "tile_params", task_copies.MODES)
  _one_of(config, "compute_dtype", COMPUTE_DTYPES)
  level = config.get("cpu_llvm_level", 3)
  if isinstance(level, bool) or not isinstance(level, int) or not (
      0 <= level <= 3):
    raise _fail("cpu_llvm_level", level,
                "must be an integer from 0 to 3 (LLVM's optimisation level; "
                "XLA's default is 3)")
  for field in ("n_way", "k_shot", "n_query", "eval_n_query", "inner_steps",
                "eval_inner_steps", "meta_batch_size", "meta_steps",
                "steps_per_call", "steps_per_epoch", "test_tasks",
                "eval_chunk_size", "ensemble_top_k"):
    _int_at_least(config, field, 1)
  if config.n_way < 2 and config.loss == "cross_entropy":
    raise _fail("n_way", config.n_way, "must be an integer >= 2")
  for field in ("msl_epochs", "first_order_epochs", "eval_every",
                "checkpoint_every", "val_tasks", "train_pool", "seed"):
    _int_at_least(config, field, 0)
  for field in ("inner_lr", "outer_lr"):
    _positive(config, field)
  if not config.max_train_seconds >= 0:
    raise _fail("max_train_seconds", config.max_train_seconds,
                "must be >= 0 (0 = no limit)")
  if config.lr_schedule == "linear" and not 0 <= config.outer_lr_min <= (
      config.outer_lr):
    raise _fail("outer_lr_min", config.outer_lr_min,
                f"must be in [0, outer_lr={config.outer_lr}] (the rate the "
                "linear schedule ends at)")
  if config.lr_schedule == "cosine":
    _positive(config, "outer_lr_min")
    if config.outer_lr_min > config.outer_lr:
      raise _fail("outer_lr_min", config.outer_lr_min,
                  f"must be in (0, outer_lr={config.outer_lr}]")
  dataset.check(config)
  augment.check(config)
  _check_episode_shapes(config, dataset)
  _positive(config, "imaml_lambda")
  _int_at_least(config, "imaml_cg_steps", 1)
  _at_least_zero(config, "imaml_cg_damping")
  _check_algorithm_needs(config)
  if config.train_pool and config.train_pool < config.meta_batch_size:
    raise _fail("train_pool", config.train_pool,
                f"must be 0 (fresh tasks) or >= meta_batch_size="
                f"{config.meta_batch_size}")
  _int_at_least(config, "devices", 0)


def _check_algorithm_needs(config: ml_collections.ConfigDict) -> None:
  """What the algorithm's row needs of the rest of the config: class labels
  for prototypes, and the fields its own inner update reads (checked by
  building it)."""
  algorithm = algorithms.get(config.algorithm)
  if (algorithm.prototypes
      and not objectives.OBJECTIVES[config.loss].integer_targets):
    raise _fail("algorithm", config.algorithm,
                f"needs class labels (loss 'cross_entropy', not "
                f"{config.loss!r}): its prototypes are the means of each "
                "class's support embeddings")
  algorithm.inner_update(config)


SHAPE_FIELDS = ("min_n_way", "min_k_shot", "eval_n_way", "eval_k_shot")


def _check_episode_shapes(config: ml_collections.ConfigDict,
                          dataset: datasets.Dataset) -> None:
  """Episodes of any way and shot (:mod:`metalearn.data.shapes`): each
  bound in range, served by the dataset and the algorithm."""
  for field in SHAPE_FIELDS:
    _int_at_least(config, field, 0)
  for field, most, low in (("min_n_way", "n_way", 2),
                           ("min_k_shot", "k_shot", 1)):
    if config[field] and not low <= config[field] <= config[most]:
      raise _fail(field, config[field],
                  f"must be 0 (every task has {most}) or an integer in "
                  f"[{low}, {most}={config[most]}]")
  if config.eval_n_way == 1:
    raise _fail("eval_n_way", 1, "must be 0 (n_way) or an integer >= 2")
  used = [f for f in SHAPE_FIELDS if config[f]]
  if used and not dataset.any_shape:
    raise _fail(used[0], config[used[0]],
                f"must be 0: dataset {config.dataset!r} draws tasks of one "
                "shape (episodes of any way and shot need an image dataset, "
                "metalearn.data.image_dataset)")
  wider = shapes.eval_n_way(config) > config.n_way
  algorithm = algorithms.get(config.algorithm)
  if wider and algorithm.per_step_bn:
    raise _fail("eval_n_way", config.eval_n_way,
                f"must be <= n_way={config.n_way} for {config.algorithm}: "
                "its per-step batch norm leaves the model no body for the "
                "prototype head of a wider task; train with n_way >= "
                "eval_n_way (and min_n_way for smaller training tasks)")
  if config.ensemble_top_k > 1 and shapes.eval_n_way(config) != config.n_way:
    raise _fail("eval_n_way", config.eval_n_way,
                f"must be 0 or n_way={config.n_way} with ensemble_top_k="
                f"{config.ensemble_top_k} (the ensemble scores the head as "
                "trained)")


def _check_model_and_loss(config: ml_collections.ConfigDict) -> None:
  """The model, loss and optimizers exist; the model's own fields check."""
  spec = models.get(config.model)
  missing = [f for f in spec.fields if f not in config]
  if missing:
    raise _fail("model", config.model, f"it reads config fields "
                f"{', '.join(missing)}, which this config lacks")
  if spec.check is not None:
    spec.check(config)
  _one_of(config, "loss", tuple(objectives.OBJECTIVES))
  _one_of(config, "outer_optimizer", ("adam", "sgd"))
  _one_of(config, "inner_optimizer", tuple(rules.INNER_UPDATES))
  _positive(config, "inner_adam_lr")
  if isinstance(config.frozen, str):
    raise _fail("frozen", config.frozen, "must be a sequence of parameter "
                "path substrings, e.g. ('norm',)")
