"""Config validation: every bad field fails before anything compiles.

Each error names the field, the value and the valid range, e.g.
``config.inner_steps=0 is invalid: must be an integer >= 1``.
"""

import ml_collections

from metalearn import algorithms
from metalearn import objectives
from metalearn.data.datasets import IMAGE_DATASETS
from metalearn.models.conv4 import CONV_IMPLS
from metalearn.precision import COMPUTE_DTYPES
from metalearn.reptile import INNER_OPTIMIZERS

DATASETS = IMAGE_DATASETS + ("sinusoid",)
MODELS = ("conv4", "resnet12", "mlp")
LR_SCHEDULES = ("constant", "cosine", "linear")
MAX_DRAWINGS = 20  # Omniglot: 20 drawings of every character.
# Examples per class of each dataset that has classes (Omniglot: the rest).
EXAMPLES_PER_CLASS = {"mini_imagenet": 600}


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
  _one_of(config, "dataset", DATASETS)
  _one_of(config, "lr_schedule", LR_SCHEDULES)
  _check_model_and_loss(config)
  _one_of(config, "batching", ("vmap", "map"))
  _one_of(config, "conv_impl", CONV_IMPLS)
  _one_of(config, "compute_dtype", COMPUTE_DTYPES)
  for field in ("n_way", "k_shot", "n_query", "eval_n_query", "inner_steps",
                "eval_inner_steps", "meta_batch_size", "meta_steps",
                "steps_per_call", "steps_per_epoch", "filters", "test_tasks",
                "eval_chunk_size"):
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
  _check_examples_per_class(config)
  if config.train_pool and config.train_pool < config.meta_batch_size:
    raise _fail("train_pool", config.train_pool,
                f"must be 0 (fresh tasks) or >= meta_batch_size="
                f"{config.meta_batch_size}")
  _int_at_least(config, "devices", 0)


def _check_model_and_loss(config: ml_collections.ConfigDict) -> None:
  """The model, loss and optimizers exist and suit the dataset."""
  _one_of(config, "model", MODELS)
  _one_of(config, "loss", tuple(objectives.OBJECTIVES))
  _one_of(config, "outer_optimizer", ("adam", "sgd"))
  _one_of(config, "reptile_inner", INNER_OPTIMIZERS)
  _one_of(config, "activation", ("relu", "tanh"))
  _positive(config, "reptile_adam_lr")
  if config.dataset == "sinusoid":
    if config.loss != "mse" or config.model != "mlp":
      raise _fail("loss" if config.loss != "mse" else "model",
                  config.loss if config.loss != "mse" else config.model,
                  "dataset 'sinusoid' is regression: it needs loss 'mse' "
                  "and model 'mlp'")
  elif config.loss != "cross_entropy":
    raise _fail("loss", config.loss,
                f"dataset {config.dataset!r} is classification: it needs "
                "loss 'cross_entropy'")
  if any(isinstance(w, bool) or not isinstance(w, int) or w < 1
         for w in (*config.widths, *config.hidden)):
    raise _fail("widths" if config.model == "resnet12" else "hidden",
                config.widths if config.model == "resnet12" else config.hidden,
                "must be integers >= 1")


def _check_examples_per_class(config: ml_collections.ConfigDict) -> None:
  """k_shot + n_query fits the examples each class has."""
  if config.dataset == "sinusoid":
    return
  limit = EXAMPLES_PER_CLASS.get(config.dataset, MAX_DRAWINGS)
  for field, shots in (("n_query", config.k_shot + config.n_query),
                       ("eval_n_query", config.k_shot + config.eval_n_query)):
    if shots > limit:
      raise _fail(field, config[field],
                  f"k_shot + {field} must be <= {limit} (examples per class "
                  f"of {config.dataset!r}); with k_shot={config.k_shot} the "
                  f"valid range is [1, {limit - config.k_shot}]")


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
    field = "n_query" if name == "train" else "eval_n_query"
    examples = getattr(splits, name).shape[1]
    if config.k_shot + config[field] > examples:
      raise _fail(field, config[field],
                  f"the {config.dataset!r} {name} split has {examples} "
                  f"examples per class, so k_shot + {field} must be <= "
                  f"{examples}")
