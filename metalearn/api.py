"""One call to meta-train: ``train_maml(model, tasks, ...)``.

MAML, FOMAML, MAML++ and first-order MAML++ are two flags on the one code
path of :mod:`metalearn.core`:

* ``first_order=True`` drops the second-order terms of the meta-gradient
  (``stop_gradient`` on every inner gradient).
* ``plus_plus=True`` turns on MAML++'s multi-step loss (the query loss after
  every inner step, annealed towards the last step over ``msl_epochs``) and
  learned per-layer, per-step inner learning rates (LSLR). MAML++'s per-step
  batch norm is a property of the *model*, not of this call: pass
  ``metalearn.models.conv4(n_way, per_step_bn=inner_steps)`` (or a flax module
  with a ``per_step_bn`` field whose ``__call__(x, step)`` takes the inner
  step) and the step index is passed; other models get the other two parts.

Derivative-order annealing and the cosine outer schedule of the full MAML++
recipe are config options of :func:`metalearn.train.train_and_evaluate`.
"""

import functools
import itertools
import math
import numbers
import time
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from metalearn import core
from metalearn import precision
from metalearn import schedules
from metalearn import step as step_lib
from metalearn.data import episodes
from metalearn.models import Model
from metalearn.types import ApplyFn, PyTree, Task

TaskSource = Task | Callable[..., Task] | Iterable[Task]
DEFAULT_POOL_BATCH = 8


class TrainStats(NamedTuple):
  """Cost of a run; the step is compiled ahead of time, so they are separate.

  Attributes:
    compile_seconds: compiling the meta-step program(s) for the first batch
      shape (MAML++ has two: with and after its multi-step loss).
    train_seconds: the meta-steps themselves, until the last one finished.
    iterations: meta-steps taken.
    tasks: tasks adapted in all (sum of the meta-batch sizes).
    tasks_per_second: ``tasks / train_seconds``.
    xla_temp_bytes: XLA's scratch memory for one meta-step (exact; the
      larger of MAML++'s two programs; ``None`` where the backend does not
      report it).
  """
  compile_seconds: float
  train_seconds: float
  iterations: int
  tasks: int
  tasks_per_second: float
  xla_temp_bytes: Optional[int]


class TrainResult(NamedTuple):
  """What :func:`train_maml` returns.

  Attributes:
    params: the meta-learned initial parameters.
    inner_lrs: inner learning rates, leaves ``[inner_steps]`` (learned with
      ``plus_plus``, else the fixed ``inner_lr``).
    state: the final :class:`metalearn.MetaState` (step, params, inner rates,
      optimizer state): pass it on to keep training.
    losses: [num_iterations] the meta-loss of every iteration (the weighted
      multi-step loss with ``plus_plus``).
    step_losses: [num_iterations, inner_steps] with ``plus_plus``: the query
      loss after each inner step, mean over the iteration's tasks, while the
      multi-step loss weighs them (the first ``msl_epochs`` epochs); after
      that only the last step counts and only it is computed, so the earlier
      columns are NaN. [num_iterations, 1] without ``plus_plus``: the last
      step's only (MAML's meta-loss needs just that, so the query set is not
      run after the earlier steps).
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


def _check_int(name: str, value, low: int, high: Optional[int] = None) -> None:
  ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
  if not ok or value < low or (high is not None and value > high):
    bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
    raise ValueError(f"{name} must be an integer {bound}; got {value!r}.")


def _check_positive(name: str, value) -> None:
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if not ok or not math.isfinite(value) or value <= 0:
    raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")


def _check_bool(name: str, value) -> None:
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be True or False; got {value!r}.")


def _as_task_batch(value, what: str) -> Task:
  """Checks one batch of tasks (leading task axis) and puts it on device."""
  if not isinstance(value, Task):
    raise ValueError(f"{what} must be a metalearn.Task batch; got "
                     f"{type(value).__name__}.")
  batch = Task(*(jnp.asarray(x) for x in value))
  if batch.support_y.ndim == 1:
    raise ValueError(f"{what} is a single task (support_y has shape "
                     f"{batch.support_y.shape}); add a leading task axis, "
                     "e.g. jax.tree.map(lambda x: x[None], task).")
  try:
    core.validate_task(batch, batched=True)
  except ValueError as e:
    raise ValueError(f"{what}: {e}") from e
  return batch


class _Source(NamedTuple):
  """A task source, normalised: ``task_fn(key, data)`` or a batch iterator."""
  task_fn: Optional[Callable[..., Task]]
  data: Any
  batches: Optional[Iterable[Task]]
  example: Task  # one batch, for shapes and flax init
  batch_size: int
  iters_per_epoch: Optional[int]


def _resolve_tasks(tasks, task_data, meta_batch_size, key) -> _Source:
  if meta_batch_size is not None and not isinstance(tasks, Task):
    raise ValueError("meta_batch_size applies only to a fixed Task pool; "
                     "a sampler or an iterable gives its own batch size.")
  if task_data is not None and (isinstance(tasks, Task) or
                                not callable(tasks)):
    raise ValueError("task_data is only used with a callable tasks "
                     "(task_fn(key, task_data) -> Task batch).")
  if isinstance(tasks, Task):
    pool = _as_task_batch(tasks, "tasks (a fixed pool)")
    size = int(pool.support_y.shape[0])
    batch = DEFAULT_POOL_BATCH if meta_batch_size is None else meta_batch_size
    if meta_batch_size is None:
      batch = min(batch, size)
    _check_int("meta_batch_size", batch, 1, size)
    task_fn = lambda k, p: episodes.sample_from_pool(k, p, batch)  # noqa: E731
    return _Source(task_fn, pool, None, task_fn(key, pool), batch,
                   math.ceil(size / batch))
  if callable(tasks):
    if task_data is None:
      task_fn = lambda k, _: tasks(k)  # noqa: E731
    else:
      task_fn = tasks
    example = _as_task_batch(task_fn(key, task_data),
                             "tasks(key) (the sampler's output)")
    return _Source(task_fn, task_data, None, example,
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
  example = _as_task_batch(first, "each item of tasks")
  if one_shot:
    batches = itertools.chain([first], tasks)
  else:  # Re-iterable (a list): go round it again and again.
    batches = itertools.chain.from_iterable(itertools.repeat(tasks))
  per_epoch = len(tasks) if hasattr(tasks, "__len__") else None
  return _Source(None, None, batches, example,
                 int(example.support_y.shape[0]), per_epoch)


def _resolve_model(model, params, example_x, key
                  ) -> tuple[ApplyFn, PyTree, bool]:
  """-> (apply_fn, params, step_aware) for any accepted kind of model."""
  if isinstance(model, Model):
    if params is None:
      params = model.init(key)
    return model.apply, params, model.step_aware
  if isinstance(model, nn.Module):
    if params is None:
      params = model.init(key, example_x)
    if isinstance(params, dict) and set(params) >= {"params"}:
      if set(params) != {"params"}:
        raise ValueError(
            "model: the flax module has variable collections besides "
            f"'params' ({sorted(set(params) - {'params'})}); train_maml "
            "needs a stateless module (e.g. transductive batch norm, as in "
            "metalearn.models.Conv4).")
      params = params["params"]
    step_aware = bool(getattr(model, "per_step_bn", 0))
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


def _check_logits(apply_fn, params, step_aware, example: Task) -> None:
  x = example.support_x[0]
  args = (params, x, jnp.int32(0)) if step_aware else (params, x)
  try:
    out = jax.eval_shape(apply_fn, *args)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"model: applying it to one task's support_x (shape "
                     f"{x.shape}) failed: {type(e).__name__}: {e}") from e
  if getattr(out, "ndim", None) != 2 or out.shape[0] != x.shape[0]:
    raise ValueError(f"model must map inputs [B, ...] to logits [B, n_way]; "
                     f"got {getattr(out, 'shape', out)} for inputs {x.shape}.")


def _msl_weights_fn(inner_steps: int, msl_epochs: int, iters_per_epoch: int):
  return lambda s: schedules.msl_weights(inner_steps, s / iters_per_epoch,
                                         msl_epochs)


def compiled_temp_bytes(compiled) -> Optional[int]:
  """XLA's scratch bytes of a compiled program, or None if not reported."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  return None if analysis is None else int(analysis.temp_size_in_bytes)


def _signature(tree):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


def train_maml(model,
               tasks: TaskSource,
               *,
               params: Optional[PyTree] = None,
               inner_lr: float = 0.01,
               outer_lr: float = 0.001,
               inner_steps: int = 5,
               first_order: bool = False,
               plus_plus: bool = False,
               num_iterations: int = 1000,
               meta_batch_size: Optional[int] = None,
               task_data: Any = None,
               msl_epochs: int = 10,
               iters_per_epoch: Optional[int] = None,
               frozen: Sequence[str] = (),
               batching: str = "vmap",
               compute_dtype: str = "float32",
               seed: int = 0,
               progress: bool | str = True) -> TrainResult:
  """Meta-trains ``model`` on ``tasks`` with MAML, FOMAML or MAML++.

  Example::

    images = jnp.asarray(metalearn.data.load_splits("lake").train)
    pool = metalearn.data.fixed_tasks(0, images, num_tasks=200, n_way=5,
                                      k_shot=1, n_query=15)
    model = metalearn.models.conv4(5, per_step_bn=5)  # per-step BN: MAML++
    result = train_maml(model, pool, inner_lr=0.01, outer_lr=0.001,
                        inner_steps=5, plus_plus=True, num_iterations=1250)

  Args:
    model: a flax ``nn.Module`` (``__call__(x) -> logits``; initialised on
      one task's support set unless ``params`` is given), an apply function
      ``apply(params, x) -> logits [B, n_way]`` (needs ``params``), or a
      :class:`metalearn.models.Model`.
    tasks: where the tasks come from: a sampler ``tasks(key) -> Task`` batch
      (jax-traceable, e.g. a ``functools.partial`` of
      ``metalearn.data.sample_tasks``; it runs inside the compiled step); a
      fixed pool, one :class:`metalearn.Task` whose fields have a leading
      ``[num_tasks]`` axis (``meta_batch_size`` tasks are drawn per
      iteration); or any iterable of Task batches (a list is cycled; an
      iterator must last ``num_iterations`` batches).
    params: initial parameters (for a flax module, its ``params`` or the
      whole ``{"params": ...}`` dict).
    inner_lr: inner-loop SGD rate, > 0 (the initial value when learned).
    outer_lr: Adam's learning rate for the meta-update, > 0.
    inner_steps: inner-loop SGD steps per task, >= 1.
    first_order: FOMAML (no second-order terms in the meta-gradient).
    plus_plus: MAML++: multi-step loss and learned per-layer per-step rates.
    num_iterations: meta-updates, >= 1.
    meta_batch_size: tasks per meta-update drawn from a pool (default
      ``min(8, pool size)``); only for a pool.
    task_data: with a callable ``tasks``, call it as ``tasks(key,
      task_data)`` so that large arrays (the image set) are arguments of the
      compiled step rather than constants baked into it.
    msl_epochs: with ``plus_plus``, epochs over which the multi-step loss
      anneals to the last step (see :func:`metalearn.msl_weights`).
    iters_per_epoch: iterations per epoch for that schedule; default one
      pass over a pool (``ceil(pool / meta_batch_size)``), the length of a
      list of batches, else ``max(1, num_iterations // 100)`` (so 10 epochs
      are the first 10% of training, as in MAML++).
    frozen: parameter path substrings (e.g. ``("norm",)``) not adapted in
      the inner loop (still meta-learned).
    batching: ``"vmap"`` (tasks in parallel) or ``"map"`` (one after another:
      less memory, and faster for your own conv nets on CPU).
    compute_dtype: ``"float32"`` or ``"bfloat16"``: the network computes in
      bfloat16 while parameters, inner rates, optimizer state and losses
      stay float32 (:func:`metalearn.precision.compute_in`); the returned
      ``apply_fn`` computes the same way.
    seed: seeds the initialisation (when ``params`` is None) and task draws.
    progress: show a progress bar; a string also labels it.

  Returns:
    A :class:`TrainResult`.

  Raises:
    ValueError: naming the argument, for any bad input.
  """
  _check_positive("inner_lr", inner_lr)
  _check_positive("outer_lr", outer_lr)
  _check_int("inner_steps", inner_steps, 1)
  _check_int("num_iterations", num_iterations, 1)
  _check_bool("first_order", first_order)
  _check_bool("plus_plus", plus_plus)
  _check_int("msl_epochs", msl_epochs, 1)
  _check_int("seed", seed, 0)
  if iters_per_epoch is not None:
    _check_int("iters_per_epoch", iters_per_epoch, 1)
  if batching not in ("vmap", "map"):
    raise ValueError(f"batching must be 'vmap' or 'map'; got {batching!r}.")
  precision.check_compute_dtype("compute_dtype", compute_dtype)
  if isinstance(frozen, str):
    raise ValueError("frozen must be a sequence of path substrings, e.g. "
                     f"('norm',); got the string {frozen!r}.")
  init_key, task_key = jax.random.split(jax.random.key(seed))
  source = _resolve_tasks(tasks, task_data, meta_batch_size, task_key)
  apply_fn, params, step_aware = _resolve_model(
      model, params, source.example.support_x[0], init_key)
  _check_logits(apply_fn, params, step_aware, source.example)
  apply_fn = precision.compute_in(apply_fn, compute_dtype)
  inner_lrs = core.fixed_inner_lrs(params, inner_lr, inner_steps,
                                   frozen=tuple(frozen))
  try:
    core.validate_inner_lrs(params, inner_lrs)
  except ValueError as e:
    raise ValueError(f"frozen={tuple(frozen)!r}: {e}") from e
  epoch = (iters_per_epoch or source.iters_per_epoch
           or max(1, num_iterations // 100))
  optimizer = optax.adam(outer_lr)
  state = step_lib.init_meta_state(params, inner_lrs, optimizer,
                                   learn_inner_lrs=plus_plus)
  # MAML++'s multi-step loss runs the query set after every inner step until
  # it has annealed to the last step (msl_end); from there on, and for
  # MAML/FOMAML throughout, a second program runs it once, after the last.
  msl_end = min(num_iterations, msl_epochs * epoch) if plus_plus else 0
  make = functools.partial(
      step_lib.make_meta_step, apply_fn, optimizer,
      source.task_fn or (lambda _, batch: batch),
      first_order=bool(first_order), learn_inner_lrs=bool(plus_plus),
      step_aware=step_aware, batching=batching)
  steps = {}
  if msl_end > 0:
    steps[True] = make(_msl_weights_fn(inner_steps, msl_epochs, epoch))
  if msl_end < num_iterations:
    steps[False] = make(None)
  first_data = source.data if source.batches is None else source.example
  start = time.perf_counter()
  compiled = {k: f.lower(state, first_data, task_key).compile()
              for k, f in steps.items()}
  compile_seconds = time.perf_counter() - start
  signature = _signature(first_data)
  label = progress if isinstance(progress, str) else "meta-train"
  bar = tqdm(total=num_iterations, desc=label, disable=not progress,
             dynamic_ncols=True)
  outputs, tasks_seen = [], 0
  batches = source.batches
  start = time.perf_counter()
  for i in range(num_iterations):
    if batches is None:
      data = source.data
    else:
      item = next(batches, None)
      if item is None:
        bar.close()
        raise ValueError(f"tasks ran out after {i} batches; num_iterations="
                         f"{num_iterations} needs that many (pass a list to "
                         "cycle through it).")
      data = _as_task_batch(item, "each item of tasks")
    multi_step = i < msl_end
    run = (compiled[multi_step] if _signature(data) == signature
           else steps[multi_step])
    state, out = run(state, data, task_key)
    outputs.append((out.loss, out.step_loss))
    tasks_seen += (source.batch_size if batches is None
                   else int(data.support_y.shape[0]))
    bar.update(1)
    if progress and (i % 10 == 9 or i == num_iterations - 1):
      bar.set_postfix(loss=f"{float(out.loss):.3f}")
  jax.block_until_ready(state)
  train_seconds = time.perf_counter() - start
  bar.close()
  losses = np.asarray([o[0] for o in outputs], np.float32)
  columns = inner_steps if plus_plus else 1
  step_losses = np.full((num_iterations, columns), np.nan, np.float32)
  for i, (_, step_loss) in enumerate(outputs):
    step_losses[i, columns - np.size(step_loss):] = np.asarray(step_loss)
  stats = TrainStats(compile_seconds, train_seconds, num_iterations,
                     tasks_seen, tasks_seen / max(train_seconds, 1e-9),
                     max((b for b in map(compiled_temp_bytes,
                                          compiled.values())
                          if b is not None), default=None))
  return TrainResult(state.meta.params, state.meta.inner_lrs, state, losses,
                     step_losses, apply_fn, step_aware, stats)
