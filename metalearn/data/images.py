"""Image datasets of classes: from train / val / test arrays to a ``Dataset``.

An image dataset is a function that returns its class-major uint8 images
(``Splits``: arrays [C, D, ...], or ``RaggedClasses`` when the classes have
unequal sizes), the shape of one image and how many examples each class has;
:func:`image_dataset` turns that into a registrable
:class:`metalearn.data.Dataset` that checks the config, samples episodes on
the device (:mod:`metalearn.data.episodes`) and draws the fixed task sets
with the same seeds for every dataset: a training pool ``config.seed + 1``,
validation ``config.seed + 2`` and test ``config.seed + 3``.
"""

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metalearn.data import episodes
from metalearn.data import ragged
from metalearn.data import registry
from metalearn.data import shapes

Config = ml_collections.ConfigDict


class Splits(NamedTuple):
  """Train / val / test classes.

  Attributes:
    train: [C, D, H, W] (grayscale) or [C, D, H, W, ch] (colour) uint8, or a
      :class:`~metalearn.data.ragged.RaggedClasses` (classes of unequal
      size, images [N, H, W] or [N, H, W, ch]).
    val: as ``train``, the validation classes (may have C = 0).
    test: as ``train``, the test classes.
  """
  train: np.ndarray | ragged.RaggedClasses
  val: np.ndarray | ragged.RaggedClasses
  test: np.ndarray | ragged.RaggedClasses


def _shot_field(config: Config, split: str) -> tuple[str, int]:
  """The field naming a split's support examples per class, and its value:
  ``k_shot`` for training, ``eval_k_shot`` when set for val / test."""
  if split != "train" and config.get("eval_k_shot", 0):
    return "eval_k_shot", config.eval_k_shot
  return "k_shot", config.k_shot


def check_examples_per_class(config: Config, dataset: str,
                             examples: Optional[int]) -> None:
  """``k_shot + n_query`` and ``k_shot + eval_n_query`` (``eval_k_shot``
  when set) fit ``examples`` (None: not known before loading; checked
  against the splits then)."""
  if examples is None:
    return
  for field, split in (("n_query", "train"), ("eval_n_query", "test")):
    shot_field, shot = _shot_field(config, split)
    if shot + config[field] > examples:
      raise registry.config_error(
          field, config[field],
          f"{shot_field} + {field} must be <= {examples} (examples per "
          f"class of {dataset!r}); with {shot_field}={shot} the valid range "
          f"is [1, {examples - shot}]")


def check_against_splits(config: Config, splits: Splits) -> None:
  """``n_way`` fits every split's class count (train counts rotations), and
  each split has the examples per class the queries need (its smallest
  class, when the classes have unequal sizes)."""
  fail = registry.config_error
  train_classes = ragged.num_classes(splits.train) * (4 if config.rotate
                                                      else 1)
  for name, classes in (("train", train_classes),
                        ("val", ragged.num_classes(splits.val)),
                        ("test", ragged.num_classes(splits.test))):
    if name == "val" and not config.val_tasks:
      continue
    if name == "val" and not classes:
      raise fail("val_tasks", config.val_tasks,
                 f"the {config.dataset!r} split has no validation classes, "
                 "so val_tasks must be 0")
    way_field = ("eval_n_way" if name != "train"
                 and config.get("eval_n_way", 0) else "n_way")
    if config[way_field] > classes:
      raise fail(way_field, config[way_field],
                 f"the {config.dataset!r} {name} split has {classes} "
                 f"classes, so the valid range is [2, {classes}]")
    field = "n_query" if name == "train" else "eval_n_query"
    shot_field, shot = _shot_field(config, name)
    examples = int(ragged.class_sizes(getattr(splits, name)).min())
    if shot + config[field] > examples:
      raise fail(field, config[field],
                 f"the {config.dataset!r} {name} split has {examples} "
                 f"examples in its smallest class, so {shot_field} + {field} "
                 f"must be <= {examples}")


def parts(config: Config, splits: Splits) -> registry.DataParts:
  """The training images (or pool) and the fixed val / test tasks.

  Args:
    config: reads ``n_way``, ``k_shot``, ``n_query``, ``eval_n_query``,
      ``rotate``, ``train_pool``, ``val_tasks``, ``test_tasks``, ``seed``,
      and ``min_n_way``, ``min_k_shot``, ``eval_n_way``, ``eval_k_shot``
      (:mod:`metalearn.data.shapes`).
    splits: the dataset's classes, already checked against the config.

  Returns:
    ``DataParts``: train images as a jnp array (or a pool of
    ``config.train_pool`` tasks, seed + 1, padded when the training
    episodes vary), ``config.val_tasks`` val tasks (seed + 2, None when 0)
    and ``config.test_tasks`` test tasks (seed + 3), the fixed ones
    ``eval_n_way``-way ``eval_k_shot``-shot with ``config.eval_n_query``
    queries per class.
  """
  sizes = dict(n_way=shapes.eval_n_way(config),
               k_shot=shapes.eval_k_shot(config))
  splits = jax.tree.map(jnp.asarray, splits)
  train = splits.train
  if config.train_pool:
    pool = dict(num_tasks=config.train_pool, n_way=config.n_way,
                k_shot=config.k_shot, n_query=config.n_query,
                rotate=config.rotate)
    train = (shapes.fixed_tasks(config.seed + 1, train, **pool,
                                **shapes.bounds(config))
             if shapes.varies(config) else
             episodes.fixed_tasks(config.seed + 1, train, **pool))
  val = (episodes.fixed_tasks(config.seed + 2, splits.val,
                              num_tasks=config.val_tasks,
                              n_query=config.eval_n_query, **sizes)
         if config.val_tasks else None)
  test = episodes.fixed_tasks(config.seed + 3, splits.test,
                              num_tasks=config.test_tasks,
                              n_query=config.eval_n_query, **sizes)
  return registry.DataParts(train, val, test)


def task_fn(config: Config) -> registry.TaskFn:
  """``(key, images or pool) -> Task`` batch of ``config.meta_batch_size``
  fresh episodes (``config.rotate``: rotations as classes; of any way and
  shot when the config says so, :mod:`metalearn.data.shapes`), or a draw
  from the fixed pool when ``config.train_pool > 0``."""
  batch_size = config.meta_batch_size
  if config.train_pool:
    return lambda key, pool: episodes.sample_from_pool(key, pool, batch_size)
  sizes = dict(n_way=config.n_way, k_shot=config.k_shot,
               n_query=config.n_query, batch_size=batch_size,
               rotate=config.rotate)
  if shapes.varies(config):
    sizes.update(shapes.bounds(config))
    return lambda key, images: shapes.sample_tasks(key, images, **sizes)
  return lambda key, images: episodes.sample_tasks(key, images, **sizes)


def image_dataset(name: str, description: str,
                  load_splits: Callable[[Config], Splits],
                  input_shape: tuple[int, ...] | Callable[[Config], tuple],
                  examples_per_class: Optional[int]) -> registry.Dataset:
  """A classification dataset of class-major uint8 images.

  Args:
    name: the ``config.dataset`` value.
    description: one phrase for report headers.
    load_splits: ``load_splits(config) -> Splits`` of uint8 images
      [C, D, H, W] (grayscale: {0, 1} or 0..255, cast unchanged) or
      [C, D, H, W, ch] (colour 0..255, scaled into [0, 1]), or of
      ``RaggedClasses``; may build a cache first (reading e.g.
      ``config.data_dir``, ``config.cache_dir``).
    input_shape: one sampled image, (H, W, ch), e.g. (28, 28, 1); or
      ``input_shape(config)`` when the config sets it.
    examples_per_class: D, checked against ``k_shot + n_query`` before
      loading; None when it is known only once loaded (unequal classes).

  Returns:
    The ``Dataset`` (pass it to :func:`metalearn.data.register`).
  """
  shape = input_shape if callable(input_shape) else (
      lambda config, fixed=tuple(input_shape): fixed)

  def check(config: Config) -> None:
    registry.check_objective(config, name, "cross_entropy")
    check_examples_per_class(config, name, examples_per_class)

  def load(config: Config) -> registry.DataParts:
    splits = Splits(*load_splits(config))
    check_against_splits(config, splits)
    return parts(config, splits)

  return registry.Dataset(
      name=name, description=description, objective="cross_entropy",
      input_shape=shape, check=check, load=load,
      task_fn=task_fn, any_shape=True)
