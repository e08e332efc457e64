"""What ``train_maml`` accepts, normalised: task sources, models, checks.

A task source is a fixed pool (one :class:`metalearn.Task` with a leading
task axis), labelled arrays (:func:`metalearn.data.from_arrays`: episodes
sampled on the device), a sampler ``key -> Task`` batch (or ``(key, data)
-> Task``), or an iterable of Task batches. A model is a
:class:`metalearn.models.Model`, a flax module, or an apply function with
its params. Every check raises a ValueError naming the argument.
"""

import itertools
import math
import numbers
from typing import Any, Callable, Iterable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metalearn import algorithms
from metalearn import core
from metalearn import data_checks
from metalearn import objectives
from metalearn import precision
from metalearn.data import arrays
from metalearn.data import episodes
from metalearn.models import Model
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, PyTree, Task

TaskSource = (Task | arrays.ArrayEpisodes | Callable[..., Task]
              | Iterable[Task])
DEFAULT_POOL_BATCH = 8


def check_int(name: str, value, low: int, high: Optional[int] = None) -> None:
  ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
  if not ok or value < low or (high is not None and value > high):
    bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
    raise ValueError(f"{name} must be an integer {bound}; got {value!r}.")


def check_positive(name: str, value) -> None:
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if not ok or not math.isfinite(value) or value <= 0:
    raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")


def check_bool(name: str, value) -> None:
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be True or False; got {value!r}.")


def as_task_batch(value, what: str,
                  objective: Objective = CLASSIFICATION) -> Task:
  """Checks one batch of tasks (leading task axis) and puts it on device."""
  if not isinstance(value, Task):
    raise ValueError(f"{what} must be a metalearn.Task batch; got "
                     f"{type(value).__name__}.")
  batch = Task(*(jnp.asarray(x) for x in value[:4]),
               jax.tree.map(jnp.asarray, value.mask))
  if batch.support_y.ndim == 1:
    raise ValueError(f"{what} is a single task (support_y has shape "
                     f"{batch.support_y.shape}); add a leading task axis, "
                     "e.g. jax.tree.map(lambda x: x[None], task).")
  try:
    core.validate_task(batch, batched=True, objective=objective)
  except ValueError as e:
    raise ValueError(f"{what}: {e}") from e
  data_checks.check_task_batch(batch, what,
                               integer_targets=objective.integer_targets)
  return batch


class Source(NamedTuple):
  """A task source, normalised: ``task_fn(key, data)`` or a batch iterator."""
  task_fn: Optional[Callable[..., Task]]
  data: Any
  batches: Optional[Iterable[Task]]
  example: Task  # one batch, for shapes and flax init
  batch_size: int
  steps_per_epoch: Optional[int]


def resolve_tasks(tasks, task_data, meta_batch_size, key,
                  objective: Objective = CLASSIFICATION) -> Source:
  """Normalises ``train_maml``'s ``tasks`` (a pool, labelled arrays, a
  sampler or an iterable of batches), checking targets against
  ``objective``."""
  if meta_batch_size is not None and not isinstance(
      tasks, (Task, arrays.ArrayEpisodes)):
    raise ValueError("meta_batch_size applies only to a fixed Task pool or "
                     "metalearn.data.from_arrays; a sampler or an iterable "
                     "gives its own batch size.")
  if task_data is not None and (isinstance(tasks, Task) or
                                not callable(tasks)):
    raise ValueError("task_data is only used with a callable tasks "
                     "(task_fn(key, task_data) -> Task batch).")
  if isinstance(tasks, Task):
    pool = as_task_batch(tasks, "tasks (a fixed pool)", objective)
    size = int(pool.support_y.shape[0])
    batch = DEFAULT_POOL_BATCH if meta_batch_size is None else meta_batch_size
    if meta_batch_size is None:
      batch = min(batch, size)
    check_int("meta_batch_size", batch, 1, size)
    task_fn = lambda k, p: episodes.sample_from_pool(k, p, batch)  # noqa: E731
    return Source(task_fn, pool, None, task_fn(key, pool), batch,
                   math.ceil(size / batch))
  if isinstance(tasks, arrays.ArrayEpisodes):
    return _array_source(tasks, meta_batch_size, key, objective)
  if callable(tasks):
    if task_data is None:
      task_fn = lambda k, _: tasks(k)  # noqa: E731
    else:
      data_checks.check_data("task_data", task_data)
      task_fn = tasks
    example = as_task_batch(task_fn(key, task_data),
                            "tasks(key) (the sampler's output)", objective)
    return Source(task_fn, task_data, None, example,
                   int(example.support_y.shape[0]), None)
  if isinstance(tasks, (str, bytes, dict)) or not hasattr(tasks, "__iter__"):
    raise ValueError(
        "tasks must be a sampler (key -> Task batch), a fixed Task pool with "
        "a leading task axis, or an iterable of Task batches; got "
        f"{type(tasks).__name__}.")
  one_shot = iter(tasks) is tasks
  first = next(iter(tasks), None)
  if first is None:
    raise ValueError("tasks is an empty iterable.")
  example = as_task_batch(first, "each item of tasks", objective)
  if one_shot:
    batches = itertools.chain([first], tasks)
  else:  # Re-iterable (a list): go round it again and again.
    batches = itertools.chain.from_iterable(itertools.repeat(tasks))
  per_epoch = len(tasks) if hasattr(tasks, "__len__") else None
  return Source(None, None, batches, example,
                 int(example.support_y.shape[0]), per_epoch)


def _array_source(tasks: arrays.ArrayEpisodes, meta_batch_size, key,
                  objective: Objective) -> Source:
  """Episodes of ``meta_batch_size`` (default 8) tasks drawn on the device
  from :func:`metalearn.data.from_arrays`'s classes."""
  if not objective.integer_targets:
    raise ValueError("tasks from metalearn.data.from_arrays are "
                     f"classification; loss={objective.name!r} needs "
                     "targets of its own.")
  batch = DEFAULT_POOL_BATCH if meta_batch_size is None else meta_batch_size
  check_int("meta_batch_size", batch, 1)
  sizes = dict(batch_size=batch, **tasks.sizes())
  task_fn = lambda k, d: episodes.sample_tasks(k, d, **sizes)  # noqa: E731
  data = jax.tree.map(jnp.asarray, tasks.classes)
  example = as_task_batch(task_fn(key, data),
                          "tasks (metalearn.data.from_arrays)", objective)
  return Source(task_fn, data, None, example, batch, None)


def resolve_model(model, params, example_x, key
                  ) -> tuple[ApplyFn, PyTree, bool]:
  """-> (apply_fn, params, step_aware) for any accepted kind of model."""
  if isinstance(model, Model):
    if params is None:
      params = jax.jit(model.init)(key)
    return model.apply, params, model.step_aware
  if isinstance(model, nn.Module):
    if params is None:
      params = jax.jit(model.init)(key, example_x)
    if isinstance(params, dict) and set(params) >= {"params"}:
      if set(params) != {"params"}:
        raise ValueError(
            "model: the flax module has variable collections besides "
            f"'params' ({sorted(set(params) - {'params'})}); train_maml "
            "needs a stateless module (e.g. transductive batch norm, as in "
            "metalearn.models.Conv4).")
      params = params["params"]
    step_aware = bool(getattr(model, "bn_steps", 0))
    if step_aware:
      def apply(p, x, step):
        return model.apply({"params": p}, x, step)
    else:
      def apply(p, x):
        return model.apply({"params": p}, x)
    return apply, params, step_aware
  if callable(model):
    if params is None:
      raise ValueError("params is required when model is an apply function "
                       "apply(params, x) -> logits.")
    return model, params, False
  raise ValueError("model must be a flax module, an apply function "
                   "(with params=...), or a metalearn.models.Model; got "
                   f"{type(model).__name__}.")


def check_labels(example: Task) -> int:
  """Labels must run over 0..n_way-1 in every task; returns n_way."""
  labels = np.concatenate([np.asarray(example.support_y).reshape(-1),
                           np.asarray(example.query_y).reshape(-1)])
  low, high = int(labels.min()), int(labels.max())
  support_ways = np.asarray(example.support_y).max(axis=-1) + 1
  if low < 0 or np.any(np.asarray(example.query_y).max(axis=-1) + 1
                       > support_ways):
    raise ValueError(
        f"tasks: labels must lie in [0, n_way) with every query class in "
        f"the support set; got labels from {low} to {high}.")
  return high + 1


def check_logits(apply_fn, params, step_aware, example: Task,
                 objective: Objective = CLASSIFICATION) -> None:
  """The model maps one task's inputs to logits [B, n_way] for its labels
  (or, for regression, to outputs shaped like the targets)."""
  x = example.support_x[0]
  args = (params, x, jnp.int32(0)) if step_aware else (params, x)
  try:
    out = jax.eval_shape(apply_fn, *args)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"model: applying it to one task's support_x (shape "
                     f"{x.shape}) failed: {type(e).__name__}: {e}") from e
  if not objective.integer_targets:
    y = example.support_y[0]
    if getattr(out, "shape", None) != y.shape:
      raise ValueError(f"model gives outputs of shape "
                       f"{getattr(out, 'shape', out)} for targets of shape "
                       f"{y.shape} (loss={objective.name!r}).")
    return
  if getattr(out, "ndim", None) != 2 or out.shape[0] != x.shape[0]:
    raise ValueError(f"model must map inputs [B, ...] to logits [B, n_way]; "
                     f"got {getattr(out, 'shape', out)} for inputs {x.shape}.")
  n_way = check_labels(example)
  if out.shape[1] != n_way:
    raise ValueError(
        f"model gives {out.shape[1]} logits but the tasks are {n_way}-way "
        f"(labels 0..{n_way - 1}); build it with n_way={n_way}.")


def check_arguments(inner_lr, outer_lr, inner_steps, meta_steps, first_order,
                     plus_plus, msl_epochs, first_order_epochs, seed,
                     steps_per_epoch, batching, compute_dtype, frozen) -> None:
  """The scalar arguments of ``train_maml``; ValueError naming the bad one."""
  check_positive("inner_lr", inner_lr)
  check_positive("outer_lr", outer_lr)
  check_int("inner_steps", inner_steps, 1)
  check_int("meta_steps", meta_steps, 1)
  check_bool("first_order", first_order)
  check_bool("plus_plus", plus_plus)
  check_int("msl_epochs", msl_epochs, 1)
  check_int("first_order_epochs", first_order_epochs, 0)
  check_int("seed", seed, 0)
  if steps_per_epoch is not None:
    check_int("steps_per_epoch", steps_per_epoch, 1)
  if batching not in ("vmap", "map"):
    raise ValueError(f"batching must be 'vmap' or 'map'; got {batching!r}.")
  precision.check_compute_dtype("compute_dtype", compute_dtype)
  if isinstance(frozen, str):
    raise ValueError("frozen must be a sequence of path substrings, e.g. "
                     f"('norm',); got the string {frozen!r}.")


def resolve_algorithm(name: Optional[str], first_order: bool,
               plus_plus: bool) -> algorithms.Algorithm:
  """``algorithm=`` names any row of the table; else the two flags pick."""
  if name is None:
    return algorithms.from_flags(first_order, plus_plus)
  if first_order or plus_plus:
    raise ValueError(f"algorithm={name!r} sets first_order and plus_plus "
                     "itself; leave those two flags False.")
  try:
    return algorithms.get(name)
  except ValueError as e:
    raise ValueError(f"algorithm: {e}") from None


def resolve_objective(loss) -> objectives.Objective:
  """``loss``: an Objective, or the name of one."""
  if isinstance(loss, objectives.Objective):
    return loss
  return objectives.get(loss)


def one_task_source(tasks, task_dataloader):
  """``tasks`` or the write-up's ``task_dataloader``: exactly one."""
  if (tasks is None) == (task_dataloader is None):
    raise ValueError("give the tasks once: tasks=... or (the write-up's "
                     "name) task_dataloader=...; got "
                     f"{'both' if tasks is not None else 'neither'}.")
  return task_dataloader if tasks is None else tasks
