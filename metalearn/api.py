"""One call to meta-train: ``train_maml(model, tasks, ...)``.

A keyword-friendly front for the loop that ``experiments/train.py`` runs
(:mod:`metalearn.trainer`). The two flags pick an algorithm of
:mod:`metalearn.algorithms`:

* ``first_order=True`` drops the second-order terms of the meta-gradient
  (``stop_gradient`` on every inner gradient).
* ``plus_plus=True`` turns on MAML++'s multi-step loss (the query loss after
  every inner step, annealed towards the last step over ``msl_epochs``) and
  learned per-layer, per-step inner learning rates (LSLR); with
  ``first_order_epochs`` also derivative-order annealing. MAML++'s per-step
  batch norm is a property of the *model*: pass
  ``metalearn.models.conv4(n_way, bn_steps=inner_steps)`` (or a flax module
  with a ``bn_steps`` field whose ``__call__(x, step)`` takes the inner
  step) and the step index is passed.
"""

import functools
from typing import Any, NamedTuple, Optional, Sequence
import warnings

import jax
import numpy as np
import optax

from metalearn import algorithms
from metalearn import core
from metalearn import distributed
from metalearn import objectives
from metalearn import precision
from metalearn import schedules
from metalearn import sharding
from metalearn import step as step_lib
from metalearn import api_inputs
from metalearn import trainer
from metalearn.models import Model
from metalearn.types import ApplyFn, PyTree, Task


class TrainStats(NamedTuple):
  """Cost of a run; programs are compiled ahead of time, so apart.

  Attributes:
    compile_seconds: compiling the meta-step programs (one per phase).
    train_seconds: the meta-steps themselves.
    meta_steps: meta-steps taken.
    tasks: tasks adapted in all (sum of the meta-batch sizes).
    tasks_per_second: ``tasks / train_seconds``.
    xla_temp_bytes: XLA's scratch memory for one meta-step (the largest
      program's; ``None`` where the backend does not report it).
  """
  compile_seconds: float
  train_seconds: float
  meta_steps: int
  tasks: int
  tasks_per_second: float
  xla_temp_bytes: Optional[int]


class TrainResult(NamedTuple):
  """What :func:`train_maml` returns.

  Attributes:
    params: the meta-learned initial parameters.
    inner_lrs: inner learning rates, leaves ``[inner_steps]`` (learned with
      ``plus_plus``, else the fixed ``inner_lr``).
    state: the final :class:`metalearn.MetaState`.
    losses: [meta_steps] the meta-loss of every meta-step (the weighted
      multi-step loss while it is on).
    step_losses: [meta_steps, inner_steps] with ``plus_plus``: the query
      loss after each inner step, mean over the step's tasks, while the
      multi-step loss weighs them; after that only the last step is computed
      and the earlier columns are NaN. [meta_steps, 1] without it.
    apply_fn: the model's ``apply(params, x[, step])``, computing in
      ``compute_dtype``.
    step_aware: whether ``apply_fn`` takes the inner step (per-step BN).
    stats: :class:`TrainStats`.
  """
  params: PyTree
  inner_lrs: PyTree
  state: step_lib.MetaState
  losses: np.ndarray
  step_losses: np.ndarray
  apply_fn: ApplyFn
  step_aware: bool
  stats: TrainStats


def _renamed(old: str, new: str, value, current):
  """Accepts a keyword's former name, with a DeprecationWarning."""
  if value is None:
    return current
  warnings.warn(f"train_maml({old}=...) is now {new}=...", DeprecationWarning,
                stacklevel=3)
  return value


class _History(NamedTuple):
  losses: list
  step_losses: list


def _record(history: _History, chunk: trainer.Chunk) -> None:
  history.losses.extend(np.asarray(chunk.output.loss).reshape(-1))
  history.step_losses.extend(np.asarray(chunk.output.step_loss))


def _step_loss_table(rows: list, columns: int) -> np.ndarray:
  table = np.full((len(rows), columns), np.nan, np.float32)
  for i, row in enumerate(rows):
    table[i, columns - np.size(row):] = np.asarray(row).reshape(-1)
  return table


def _body_head(model, algorithm: algorithms.Algorithm, step_aware: bool,
               compute_dtype: str):
  """ANIL's fast path when the model is a Model that exposes its split."""
  if (algorithm.head_only and isinstance(model, Model) and not step_aware
      and model.body is not None):
    return core.BodyHead(precision.compute_in(model.body, compute_dtype),
                         model.head)
  return None  # adapts through the whole model: same result, slower.


def _inner_lrs(params: PyTree, inner_lr: float, inner_steps: int,
               frozen: Sequence[str],
               algorithm: algorithms.Algorithm) -> PyTree:
  if algorithm.head_only and not frozen:
    frozen = core.frozen_outside_head(params)
  inner_lrs = core.fixed_inner_lrs(params, inner_lr, inner_steps,
                                   per_element=algorithm.per_element_lrs,
                                   frozen=tuple(frozen))
  try:
    core.validate_inner_lrs(params, inner_lrs)
  except ValueError as e:
    raise ValueError(f"frozen={tuple(frozen)!r}: {e}") from e
  return inner_lrs


def _data_at(source: api_inputs.Source, mesh,
             objective: objectives.Objective):
  """meta_step -> the step's data: the pool/images (replicated over
  ``mesh``), or the next batch (split over it)."""
  if source.batches is None:
    data = sharding.replicate(source.data, mesh)
    return lambda _: data

  def next_batch(step: int) -> Task:
    item = next(source.batches, None)
    if item is None:
      raise ValueError(f"tasks ran out after {step} batches; meta_steps "
                       "needs one per meta-step (pass a list to cycle).")
    return distributed.global_batch(
        api_inputs.as_task_batch(item, "each item of tasks", objective),
        mesh)
  return next_batch


def train_maml(model,
               tasks: api_inputs.TaskSource,
               *,
               params: Optional[PyTree] = None,
               inner_lr: float = 0.01,
               outer_lr: float = 0.001,
               inner_steps: int = 5,
               first_order: bool = False,
               plus_plus: bool = False,
               meta_steps: int = 1000,
               meta_batch_size: Optional[int] = None,
               task_data: Any = None,
               msl_epochs: int = 10,
               first_order_epochs: int = 0,
               steps_per_epoch: Optional[int] = None,
               frozen: Sequence[str] = (),
               batching: str = "vmap",
               compute_dtype: str = "float32",
               seed: int = 0,
               devices: int = 0,
               algorithm: Optional[str] = None,
               loss: str | objectives.Objective = "cross_entropy",
               progress: bool | str = True,
               num_iterations: Optional[int] = None,
               iters_per_epoch: Optional[int] = None) -> TrainResult:
  """Meta-trains ``model`` on ``tasks`` with MAML, FOMAML or MAML++.

  Example::

    images = jnp.asarray(metalearn.data.load_splits("lake").train)
    pool = metalearn.data.fixed_tasks(0, images, num_tasks=200, n_way=5,
                                      k_shot=1, n_query=15)
    model = metalearn.models.conv4(5, bn_steps=5)  # per-step BN: MAML++
    result = train_maml(model, pool, inner_lr=0.01, outer_lr=0.001,
                        inner_steps=5, plus_plus=True, meta_steps=1250)

  Args:
    model: a flax ``nn.Module`` (``__call__(x) -> logits``; initialised on
      one task's support set unless ``params`` is given), an apply function
      ``apply(params, x) -> logits [B, n_way]`` (needs ``params``), or a
      :class:`metalearn.models.Model`.
    tasks: a sampler ``tasks(key) -> Task`` batch (jax-traceable; it runs
      inside the compiled step); a fixed pool, one :class:`metalearn.Task`
      with a leading ``[num_tasks]`` axis (``meta_batch_size`` tasks are
      drawn per meta-step); or any iterable of Task batches (a list is
      cycled; an iterator must last ``meta_steps`` batches). Labels must run
      over 0..n_way-1, n_way being the model's logits width.
    params: initial parameters (for a flax module, its ``params`` or the
      whole ``{"params": ...}`` dict).
    inner_lr: inner-loop SGD rate, > 0 (the initial value when learned).
    outer_lr: Adam's learning rate for the meta-update, > 0.
    inner_steps: inner-loop SGD steps per task, >= 1.
    first_order: FOMAML (no second-order terms in the meta-gradient).
    plus_plus: MAML++: multi-step loss and learned per-layer per-step rates.
    meta_steps: meta-updates, >= 1.
    meta_batch_size: tasks per meta-step drawn from a pool (default
      ``min(8, pool size)``); only for a pool.
    task_data: with a callable ``tasks``, call it as ``tasks(key,
      task_data)`` so that large arrays (the image set) are arguments of the
      compiled step rather than constants baked into it.
    msl_epochs: with ``plus_plus``, epochs over which the multi-step loss
      anneals to the last step (see :func:`metalearn.msl_weights`).
    first_order_epochs: with ``plus_plus`` and second order, run first
      order for this many epochs first (derivative-order annealing).
    steps_per_epoch: meta-steps per epoch for those schedules; default one
      pass over a pool (``ceil(pool / meta_batch_size)``), the length of a
      list of batches, else ``max(1, meta_steps // 100)``.
    frozen: parameter path substrings (e.g. ``("norm",)``) not adapted in
      the inner loop (still meta-learned).
    batching: ``"vmap"`` (tasks in parallel) or ``"map"`` (one after another:
      less memory, and faster for your own conv nets on CPU).
    compute_dtype: ``"float32"`` or ``"bfloat16"`` (parameters, optimizer
      state and losses stay float32); ``apply_fn`` computes the same way.
    seed: seeds the initialisation (when ``params`` is None) and task draws.
    devices: 0: split each meta-batch over every device (of every process
      after ``jax.distributed.initialize``); N: the first N local devices.
      The meta-batch must be a multiple of the count (docs/scaling.md).
    algorithm: any name of :data:`metalearn.ALGORITHMS` (``metasgd``,
      ``reptile``, ``anil``, ...) instead of the two flags. ``anil``
      freezes every parameter outside ``head`` unless ``frozen`` says
      otherwise; ``reptile`` has no meta-gradient (Adam then follows its
      move, :mod:`metalearn.reptile`).
    loss: ``"cross_entropy"`` (integer labels, accuracy reported),
      ``"mse"`` (float targets shaped like the outputs, regression) or a
      :class:`metalearn.objectives.Objective`.
    progress: show a progress bar; a string also labels it.
    num_iterations, iters_per_epoch: former names of ``meta_steps`` and
      ``steps_per_epoch`` (deprecated).

  Returns:
    A :class:`TrainResult`.

  Raises:
    ValueError: naming the argument, for any bad input.
    FloatingPointError: the meta-loss became non-finite (with the meta-step).
  """
  meta_steps = _renamed("num_iterations", "meta_steps", num_iterations,
                        meta_steps)
  steps_per_epoch = _renamed("iters_per_epoch", "steps_per_epoch",
                             iters_per_epoch, steps_per_epoch)
  api_inputs.check_arguments(
      inner_lr, outer_lr, inner_steps, meta_steps, first_order, plus_plus,
      msl_epochs, first_order_epochs, seed, steps_per_epoch, batching,
      compute_dtype, frozen)
  model_in = model
  algorithm = api_inputs.resolve_algorithm(algorithm, first_order,
                                             plus_plus)
  objective = api_inputs.resolve_objective(loss)
  init_key, task_key = jax.random.split(jax.random.key(seed))
  source = api_inputs.resolve_tasks(tasks, task_data, meta_batch_size,
                                      task_key, objective)
  apply_fn, params, step_aware = api_inputs.resolve_model(
      model, params, source.example.support_x[0], init_key)
  api_inputs.check_logits(apply_fn, params, step_aware, source.example,
                            objective)
  apply_fn = precision.compute_in(apply_fn, compute_dtype)
  inner_lrs = _inner_lrs(params, inner_lr, inner_steps, frozen, algorithm)
  epoch = (steps_per_epoch or source.steps_per_epoch
           or max(1, meta_steps // 100))
  optimizer = optax.adam(outer_lr)
  mesh = distributed.training_mesh(devices, source.batch_size)
  state = sharding.replicate(step_lib.init_meta_state(
      params, inner_lrs, optimizer,
      learn_inner_lrs=algorithm.learn_inner_lrs), mesh)
  plan = schedules.phase_plan(
      meta_steps=meta_steps, steps_per_epoch=epoch,
      first_order=algorithm.first_order,
      multi_step_loss=algorithm.multi_step_loss, msl_epochs=msl_epochs,
      inner_steps=inner_steps,
      first_order_epochs=first_order_epochs if algorithm.anneals_order else 0)
  weights_fn = schedules.msl_weights_fn(inner_steps, msl_epochs, epoch)
  make = functools.partial(
      step_lib.make_meta_step, apply_fn, optimizer,
      source.task_fn or (lambda _, batch: batch),
      learn_inner_lrs=algorithm.learn_inner_lrs, step_aware=step_aware,
      batching=batching, task_sharding=sharding.task_sharding(mesh),
      objective=objective, outer=algorithm.outer,
      body_head=_body_head(model_in, algorithm, step_aware, compute_dtype))
  history = _History([], [])
  distributed.synchronize(mesh)
  result = trainer.run(
      state,
      build_step=lambda phase, count: make(
          weights_fn if phase.multi_step_loss else None,
          first_order=phase.first_order, steps_per_call=count),
      plan=plan, data_at=_data_at(source, mesh, objective), key=task_key,
      tasks_per_step=source.batch_size,
      on_chunk=functools.partial(_record, history),
      label=progress if isinstance(progress, str) else algorithm.label,
      progress=bool(progress) and distributed.is_writer(),
      nan_hint=("Try a lower inner_lr or outer_lr, and check that the "
                "inputs are scaled sensibly."))
  final = result.state
  return TrainResult(
      final.meta.params, final.meta.inner_lrs, final,
      np.asarray(history.losses, np.float32),
      _step_loss_table(history.step_losses,
                       inner_steps if (algorithm.multi_step_loss or
                                       algorithm.outer == "reptile") else 1),
      apply_fn, step_aware, _stats(result, meta_steps * source.batch_size))


def _stats(result: trainer.RunResult, tasks: int) -> TrainStats:
  return TrainStats(result.compile_seconds, result.train_seconds,
                    int(result.state.step), tasks,
                    tasks / max(result.train_seconds, 1e-9),
                    result.xla_temp_bytes)
