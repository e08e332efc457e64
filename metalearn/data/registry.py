"""Datasets found by name: ``config.dataset`` -> how to check, load and sample.

A dataset registers a :class:`Dataset`, so the config checks, the build, the
report header and the benchmark need no list of their own: a new dataset is
one file that calls :func:`register` (name that file in ``config.plugins``
to use it from the binaries). The built-in ones register themselves when
``metalearn.data`` is imported: the Omniglot splits (``tfds``, ``lake``,
``vinyals``, ``mamlpp``), ``mini_imagenet``, ``folders``, ``tfds_images``,
``cifar_fs``, ``fc100``, ``cub``, ``tiered_imagenet``, ``sinusoid`` and
``synthetic``.

An image dataset is a few lines with :func:`metalearn.data.image_dataset`;
see docs/data.md.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import ml_collections

from metalearn.types import Task

Config = ml_collections.ConfigDict
TaskFn = Callable[[jax.Array, Any], Task]


class DataParts(NamedTuple):
  """What a dataset gives the training loop.

  Attributes:
    train_data: what ``task_fn``'s second argument receives: uint8
      class-major images [C, D, H, W(, ch)] (a jnp array) or a
      ``RaggedClasses`` of jnp arrays (classes of unequal size), a fixed
      ``Task`` pool with a leading [config.train_pool] axis, or
      ``jnp.zeros((0,))`` for generated tasks.
    val_tasks: ``config.val_tasks`` fixed tasks (seed ``config.seed + 2``,
      ``config.eval_n_query`` queries per class), or None when it is 0.
    test_tasks: ``config.test_tasks`` fixed tasks (seed ``config.seed + 3``).
  """
  train_data: Any
  val_tasks: Optional[Task]
  test_tasks: Task


class Dataset(NamedTuple):
  """A registered dataset.

  Attributes:
    name: the ``config.dataset`` value.
    description: one phrase for report headers, e.g. "Omniglot ('vinyals'
      split)".
    objective: the loss it needs, a name in ``metalearn.objectives``
      ("cross_entropy" or "mse").
    input_shape: ``input_shape(config)`` -> one model input's shape, e.g.
      (28, 28, 1).
    check: ``check(config)`` raises ValueError ("config.FIELD=VALUE is
      invalid: ...") for fields this dataset cannot serve; runs before
      anything is loaded.
    load: ``load(config)`` -> :class:`DataParts`, building or verifying the
      dataset's cache first; raises ValueError when ``config.n_way`` exceeds
      a split's classes.
    task_fn: ``task_fn(config)`` -> ``(key, train_data) -> Task`` batch of
      ``config.meta_batch_size`` training tasks, traceable inside ``jit``;
      with ``config.train_pool > 0`` it draws from the pool.
    any_shape: ``load`` and ``task_fn`` serve episodes of any way and shot
      (``config.min_n_way``, ``min_k_shot``, ``eval_n_way``,
      ``eval_k_shot``; :mod:`metalearn.data.shapes`), as every
      :func:`metalearn.data.image_dataset` does.
  """
  name: str
  description: str
  objective: str
  input_shape: Callable[[Config], tuple[int, ...]]
  check: Callable[[Config], None]
  load: Callable[[Config], DataParts]
  task_fn: Callable[[Config], TaskFn]
  any_shape: bool = False


_DATASETS: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
  """Adds (or replaces) a dataset under ``dataset.name``; returns it.

  Replacing lets a user's dataset file be imported again.
  """
  if not isinstance(dataset, Dataset):
    raise TypeError(f"register takes a metalearn.data.Dataset; got "
                    f"{type(dataset).__name__}.")
  _DATASETS[dataset.name] = dataset
  return dataset


def names() -> tuple[str, ...]:
  """The registered dataset names, in registration order."""
  return tuple(_DATASETS)


def get(name: str) -> Dataset:
  """The dataset called ``name``; ValueError listing the registered names."""
  if name not in _DATASETS:
    raise config_error("dataset", name,
                       f"must be one of {', '.join(_DATASETS)}")
  return _DATASETS[name]


def config_error(field: str, value, valid: str) -> ValueError:
  """``config.FIELD=VALUE is invalid: VALID.``, the config checks' format."""
  return ValueError(f"config.{field}={value!r} is invalid: {valid}.")


def check_objective(config: Config, dataset: str, objective: str) -> None:
  """``config.loss`` must be ``objective``, the loss ``dataset`` needs."""
  kind = "regression" if objective == "mse" else "classification"
  if config.loss != objective:
    raise config_error("loss", config.loss,
                       f"dataset {dataset!r} is {kind}: it needs loss "
                       f"{objective!r}")
