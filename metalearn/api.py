"""One call to meta-train: ``train_maml(model, tasks, ...)``.

The keywords become the same experiment description that a config is
(:func:`describe`), built by the same functions as ``experiments/train.py``
(:mod:`metalearn.build`) and run by the same loop (:mod:`metalearn.trainer`).
The two flags pick an algorithm of
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

import jax
import ml_collections
import numpy as np

from metalearn import api_inputs
from metalearn import build
from metalearn import configs
from metalearn import distributed
from metalearn import objectives
from metalearn import precision
from metalearn import sharding
from metalearn import step as step_lib
from metalearn import trainer
from metalearn.models import Model
from metalearn.train_result import MetaLearner
from metalearn.train_result import TrainedModel
from metalearn.train_result import TrainResult
from metalearn.train_result import TrainStats
from metalearn.types import PyTree, Task


class _History(NamedTuple):
  losses: list
  step_losses: list


def _record(history: _History, chunk: trainer.Chunk) -> None:
  history.losses.extend(np.asarray(chunk.output.loss).reshape(-1))
  steps = np.asarray(chunk.output.step_loss)
  history.step_losses.extend(steps.reshape(-1, steps.shape[-1]))


def _step_loss_table(rows: list, columns: int) -> np.ndarray:
  table = np.full((len(rows), columns), np.nan, np.float32)
  for i, row in enumerate(rows):
    table[i, columns - np.size(row):] = np.asarray(row).reshape(-1)
  return table


def _as_model(model, params, example_x, key, compute_dtype: str
             ) -> tuple[Model, PyTree]:
  """Any accepted model as a :class:`metalearn.models.Model` and params."""
  if isinstance(model, Model):
    if params is None:
      params = jax.jit(model.init)(key)
    compute = lambda f: f and precision.compute_in(f, compute_dtype)
    return model._replace(apply=compute(model.apply),
                          body=compute(model.body)), params
  apply_fn, params, step_aware = api_inputs.resolve_model(
      model, params, example_x, key)
  return Model(lambda _: params, precision.compute_in(apply_fn, compute_dtype),
               step_aware), params


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


def describe(*, algorithm: str, inner_lr: float, outer_lr: Optional[float],
             inner_steps: int, meta_steps: int, meta_batch_size: int,
             msl_epochs: int, first_order_epochs: int, steps_per_epoch: int,
             frozen: Sequence[str], batching: str, compute_dtype: str,
             seed: int, devices: int, loss: str, progress: bool
            ) -> ml_collections.ConfigDict:
  """The config that :func:`train_maml`'s keywords describe.

  The fields of :func:`metalearn.configs.base` with the algorithm's own
  (:func:`metalearn.configs.for_algorithm`) and these keywords set; every
  batch-norm affine adapts unless ``frozen`` names it, as in the write-up.
  """
  c = configs.for_algorithm(algorithm)
  c.inner_lr, c.inner_steps, c.eval_inner_steps = (inner_lr, inner_steps,
                                                   inner_steps)
  if outer_lr is not None:
    c.outer_lr = outer_lr
  c.meta_steps, c.meta_batch_size = meta_steps, meta_batch_size
  c.msl_epochs, c.first_order_epochs = msl_epochs, first_order_epochs
  c.steps_per_epoch = steps_per_epoch
  c.adapt_norm, c.frozen = True, tuple(frozen)
  c.batching, c.compute_dtype = batching, compute_dtype
  c.seed, c.devices, c.loss, c.progress = seed, devices, loss, progress
  return c


def train_maml(model,
               tasks: Optional[api_inputs.TaskSource] = None,
               *,
               task_dataloader: Optional[api_inputs.TaskSource] = None,
               params: Optional[PyTree] = None,
               inner_lr: float = 0.01,
               outer_lr: Optional[float] = None,
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
               progress: bool | str = True) -> TrainResult:
  """Meta-trains ``model`` on ``tasks`` with MAML, FOMAML, MAML++ or any
  algorithm of the table.

  The keywords describe an experiment with the same fields as a config
  (:func:`describe`), built by the same functions as ``experiments/train.py``
  (:mod:`metalearn.build`), so ``train_maml(algorithm=X, ...)`` and the
  config ``X`` with the same sizes train the same thing.

  Example, as the write-up's users write it::

    model, maml, losses = train_maml(
        model=model, task_dataloader=train_loader, inner_lr=0.01,
        outer_lr=0.001, inner_steps=5, first_order=False, plus_plus=False)

  Args:
    model: a flax ``nn.Module`` (``__call__(x) -> logits``; initialised on
      one task's support set unless ``params`` is given), an apply function
      ``apply(params, x) -> logits [B, n_way]`` (needs ``params``), or a
      :class:`metalearn.models.Model`.
    tasks: a sampler ``tasks(key) -> Task`` batch (jax-traceable; it runs
      inside the compiled step); a fixed pool, one :class:`metalearn.Task`
      with a leading ``[num_tasks]`` axis (``meta_batch_size`` tasks are
      drawn per meta-step); labelled arrays,
      ``metalearn.data.from_arrays(x, y, n_way=..., k_shot=...,
      n_query=...)`` (``meta_batch_size`` episodes drawn on the device per
      meta-step; classes may be of unequal size); or any iterable of Task
      batches (a list is
      cycled; an iterator must last ``meta_steps`` batches). Labels must run
      over 0..n_way-1, n_way being the model's logits width.
    task_dataloader: the write-up's name for ``tasks`` (give one of them).
    params: initial parameters (for a flax module, its ``params`` or the
      whole ``{"params": ...}`` dict).
    inner_lr: inner-loop SGD rate, > 0 (the initial value when learned).
    outer_lr: the outer optimizer's rate, > 0 (default the algorithm's:
      Adam at 0.001; Reptile's SGD at 1.0, annealed to 0).
    inner_steps: inner-loop steps per task, >= 1.
    first_order: FOMAML (no second-order terms in the meta-gradient).
    plus_plus: MAML++: multi-step loss and learned per-layer per-step rates.
    meta_steps: meta-updates, >= 1.
    meta_batch_size: tasks per meta-step drawn from a pool (default
      ``min(8, pool size)``) or from ``from_arrays`` (default 8); only for
      those two.
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
    seed: seeds the initialisation (when ``params`` is None) and task draws,
      as ``config.seed`` does.
    devices: 0: split each meta-batch over every device (of every process
      after ``jax.distributed.initialize``); N: the first N local devices.
      The meta-batch must be a multiple of the count (docs/scaling.md).
    algorithm: any name of :data:`metalearn.ALGORITHMS` (``metasgd``,
      ``reptile``, ``anil``, ...) instead of the two flags. ``anil``
      freezes every parameter outside ``head``; ``reptile`` moves towards
      the adapted weights with its own inner Adam and outer SGD
      (:attr:`metalearn.Algorithm.defaults`).
    loss: ``"cross_entropy"`` (integer labels, accuracy reported),
      ``"mse"`` (float targets shaped like the outputs, regression) or a
      :class:`metalearn.objectives.Objective`.
    progress: show a progress bar; a string also labels it.

  Returns:
    A :class:`TrainResult`, which unpacks as ``(model, maml, losses)``.

  Raises:
    ValueError: naming the argument, for any bad input.
    FloatingPointError: the meta-loss became non-finite (with the meta-step).
  """
  tasks = api_inputs.one_task_source(tasks, task_dataloader)
  api_inputs.check_arguments(
      inner_lr, 1.0 if outer_lr is None else outer_lr, inner_steps,
      meta_steps, first_order, plus_plus, msl_epochs, first_order_epochs,
      seed, steps_per_epoch, batching, compute_dtype, frozen)
  chosen = api_inputs.resolve_algorithm(algorithm, first_order, plus_plus)
  objective = api_inputs.resolve_objective(loss)
  key = jax.random.key(seed)  # As config.seed: init and task draws.
  source = api_inputs.resolve_tasks(tasks, task_data, meta_batch_size, key,
                                    objective)
  meta_model, params = _as_model(model, params, source.example.support_x[0],
                                 key, compute_dtype)
  api_inputs.check_logits(meta_model.apply, params, meta_model.step_aware,
                          source.example, objective)
  config = describe(
      algorithm=chosen.name, inner_lr=inner_lr, outer_lr=outer_lr,
      inner_steps=inner_steps, meta_steps=meta_steps,
      meta_batch_size=source.batch_size, msl_epochs=msl_epochs,
      first_order_epochs=first_order_epochs,
      steps_per_epoch=(steps_per_epoch or source.steps_per_epoch
                       or max(1, meta_steps // 100)),
      frozen=frozen, batching=batching, compute_dtype=compute_dtype,
      seed=seed, devices=devices, loss=objective.name,
      progress=bool(progress))
  try:
    inner_lrs = build.build_inner_lrs(config, params)
  except ValueError as e:
    raise ValueError(f"frozen={tuple(frozen)!r}: {e}") from None
  optimizer = build.build_optimizer(config)
  mesh = distributed.training_mesh(devices, source.batch_size)
  state = sharding.replicate(step_lib.init_meta_state(
      params, inner_lrs, optimizer,
      learn_inner_lrs=chosen.learn_inner_lrs), mesh)
  make = build.meta_step_builder(
      config, meta_model, optimizer,
      source.task_fn or (lambda _, batch: batch),
      task_sharding=sharding.task_sharding(mesh), objective_=objective)
  history = _History([], [])
  distributed.synchronize(mesh)
  result = trainer.run(
      state, build_step=make, plan=build.build_plan(config),
      data_at=_data_at(source, mesh, objective), key=key,
      steps_per_call=(1 if source.batches is not None
                      else min(config.steps_per_call, meta_steps)),
      tasks_per_step=source.batch_size,
      on_chunk=functools.partial(_record, history),
      label=progress if isinstance(progress, str) else chosen.label,
      progress=bool(progress) and distributed.is_writer(),
      nan_hint=("Try a lower inner_lr or outer_lr, and check that the "
                "inputs are scaled sensibly."))
  final = result.state
  columns = (inner_steps if (chosen.multi_step_loss or
                             chosen.outer.step_metrics_all_steps) else 1)
  learner = MetaLearner(
      final, final.meta.inner_lrs,
      _step_loss_table(history.step_losses, columns),
      _stats(result, meta_steps * source.batch_size), config)
  return TrainResult(
      TrainedModel(meta_model.apply, final.meta.params, meta_model.step_aware),
      learner, np.asarray(history.losses, np.float32))


def _stats(result: trainer.RunResult, tasks: int) -> TrainStats:
  return TrainStats(result.compile_seconds, result.train_seconds,
                    int(result.state.step), tasks,
                    tasks / max(result.train_seconds, 1e-9),
                    result.xla_temp_bytes, result.compile_ahead_seconds)
