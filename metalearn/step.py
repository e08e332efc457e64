"""The jitted meta-train step: sample tasks on device, meta-gradient, optax.

A step is built once by :func:`make_meta_step` from static choices
(``first_order``, ``learn_inner_lrs``, ...) and then called as
``state, metrics = step(state, data, key)``. Tasks are sampled inside the
compiled program from ``data`` by ``task_fn(key, data)``, with the key derived
as ``fold_in(key, state.step)``, so no key is threaded by hand and the host
never sits in the hot loop. ``steps_per_call > 1`` runs several meta-steps per
dispatch with ``lax.scan``; ``step(state, data, key, count)`` then runs only
the first ``count`` of them (an int32 array), so one program serves calls of
any length up to ``steps_per_call``.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import optax

from metalearn import compilation_cache
from metalearn import core
from metalearn import objectives
from metalearn import rules
from metalearn.types import ApplyFn, Array, MetaParams, PyTree, Task

TaskFn = Callable[[Array, Any], Task]
WeightsFn = Callable[[Array], Array]


class MetaState(NamedTuple):
  """Everything a meta-training run carries from step to step.

  Attributes:
    step: int32 scalar, meta-steps taken so far.
    meta: the meta-parameters (model params and inner learning rates).
    opt_state: the optax state of the trainable part of ``meta``.
  """
  step: Array
  meta: MetaParams
  opt_state: optax.OptState


class StepOutput(NamedTuple):
  """Metrics of one meta-step (a leading [steps_per_call] axis when scanned).

  Attributes:
    loss: the weighted meta-loss.
    step_loss: [Q] query loss after each inner step, task mean (Q =
      inner_steps), or after the last step only (Q = 1) when the step was built
      with ``step_weights_fn=None``.
    step_accuracy: [Q] query accuracy, likewise (``None`` for an objective
      without a metric). An outer rule without a query set (a move in
      weight space) reports its loss and metrics on the examples it trained
      on.
    grad_norm: global norm of the outer rule's direction (the meta-gradient).
  """
  loss: Array
  step_loss: Array
  step_accuracy: Array
  grad_norm: Array


def _global_norm(tree: PyTree) -> Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(tree)))


def trainable(meta: MetaParams, learn_inner_lrs: bool) -> PyTree:
  """The part of ``meta`` that the outer optimizer updates."""
  return meta if learn_inner_lrs else meta.params


def init_meta_state(params: PyTree, inner_lrs: PyTree,
                    optimizer: optax.GradientTransformation, *,
                    learn_inner_lrs: bool) -> MetaState:
  """Fresh state at step 0; validates ``inner_lrs`` against ``params``.

  The arrays are copied, so a step that donates the state never deletes the
  caller's ``params`` or ``inner_lrs``.
  """
  core.validate_inner_lrs(params, inner_lrs)
  meta = jax.tree.map(jnp.array, MetaParams(params, inner_lrs))
  return MetaState(jnp.zeros((), jnp.int32), meta,
                   optimizer.init(trainable(meta, learn_inner_lrs)))


def _traced_once(fn: Callable, *args) -> tuple[Callable, Any]:
  """``fn`` traced once on ``args``: a function that replays its jaxpr on
  arguments of the same structure, and ``fn``'s output shapes.

  Tracing a meta-step (vmap of a gradient through the inner loop) takes
  seconds; replaying its jaxpr costs a small part of that, so the step is
  not traced a second time only to learn its output shapes.
  """
  closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
  replay = jax_core.jaxpr_as_fun(closed)
  out_tree = jax.tree.structure(out_shape)

  def run(*call_args):
    return jax.tree.unflatten(out_tree, replay(*jax.tree.leaves(call_args)))
  return run, out_shape


def make_meta_step(apply_fn: ApplyFn,
                   optimizer: optax.GradientTransformation,
                   task_fn: TaskFn,
                   step_weights_fn: Optional[WeightsFn],
                   *,
                   first_order: bool = False,
                   learn_inner_lrs: bool = False,
                   step_aware: bool = False,
                   remat: bool = False,
                   unroll: int | bool = 1,
                   batching: str = "vmap",
                   steps_per_call: int = 1,
                   task_sharding: Optional[jax.sharding.Sharding] = None,
                   donate: bool = True,
                   jit: bool = True,
                   objective: objectives.Objective = objectives.CLASSIFICATION,
                   body_head: Optional[core.BodyHead] = None,
                   outer: rules.OuterRule = rules.META_GRADIENT,
                   inner: Optional[rules.InnerUpdate] = None,
                   tile_params: bool = False,
                   cpu_llvm_level: Optional[int] = None):
  """Builds ``step(state, data, key) -> (state, StepOutput)``.

  Args:
    apply_fn: the model's ``apply(params, x[, step])``.
    optimizer: the outer optax optimizer (may carry a schedule).
    task_fn: ``task_fn(key, data) -> Task`` batch, sampled inside the step.
    step_weights_fn: ``step_weights_fn(meta_step) -> [inner_steps]`` weights of
      each inner step's query loss (MAML++'s annealed multi-step loss), or
      ``None``: the last step's query loss alone (MAML, FOMAML, MAML++ after
      its annealing), with the query set run once instead of every step.
    first_order: FOMAML (``stop_gradient`` on inner gradients).
    learn_inner_lrs: update ``inner_lrs`` with the outer optimizer (MAML++).
    step_aware, remat, unroll, batching: forwarded to :func:`metalearn.core.meta_loss`.
    steps_per_call: meta-steps per dispatch (>= 1), run with ``lax.scan``;
      metrics then carry a leading [steps_per_call] axis.
    task_sharding: if given, the sampled task batch is constrained to it (for
      example a ``NamedSharding`` over a ``tasks`` mesh axis), so the batch is
      split across devices while parameters stay replicated.
    donate: donate the input state's buffers to the output (saves memory; do
      not reuse a state after passing it in).
    jit: compile with ``jax.jit`` (turn off only to debug).
    objective: the loss of both loops and the metric
      (:mod:`metalearn.objectives`).
    body_head: the model split for head-only adaptation (ANIL's body runs
      once per task; see :func:`metalearn.core.task_runner`).
    outer: what the outer optimizer follows (:class:`metalearn.rules.OuterRule`;
      default the meta-gradient).
    inner: how each task adapts (:class:`metalearn.rules.InnerUpdate`;
      default SGD with the inner rates).
    tile_params: one copy of the parameters per task under ``vmap``
      (:mod:`metalearn.task_copies`): the same step, faster on a CPU.
    cpu_llvm_level: on a CPU, LLVM's optimisation level for XLA's kernels
      (0 to 3; None: XLA's default, 3). See
      :func:`metalearn.compilation_cache.compile_options`.

  Returns:
    The step function.
  """
  if steps_per_call < 1:
    raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}.")
  if batching not in ("vmap", "map"):
    raise ValueError(f"batching must be 'vmap' or 'map', got {batching!r}.")
  if learn_inner_lrs and not outer.learns_inner_lrs:
    raise ValueError(f"the outer rule {outer.name!r} gives no direction for "
                     "the inner rates; set learn_inner_lrs=False.")
  inner = inner or rules.sgd()
  options = dict(first_order=first_order, step_aware=step_aware, remat=remat,
                 unroll=unroll, objective=objective, body_head=body_head)

  def split(train_part, meta):
    if learn_inner_lrs:
      return train_part.params, train_part.inner_lrs
    return train_part, meta.inner_lrs

  def problem(meta) -> rules.Problem:
    return rules.make_problem(apply_fn, lambda part: split(part, meta),
                              inner=inner, batching=batching,
                              tile_params=tile_params, **options)

  def one_step(state: MetaState, data, key) -> tuple[MetaState, StepOutput]:
    tasks = task_fn(jax.random.fold_in(key, state.step), data)
    if task_sharding is not None:
      tasks = jax.lax.with_sharding_constraint(tasks, task_sharding)
    weights = (None if step_weights_fn is None
               else step_weights_fn(state.step))
    train_part = trainable(state.meta, learn_inner_lrs)
    (loss, metrics), grads = outer.direction(problem(state.meta), train_part,
                                             tasks, weights)
    updates, opt_state = optimizer.update(grads, state.opt_state, train_part)
    train_part = optax.apply_updates(train_part, updates)
    meta = (train_part if learn_inner_lrs
            else state.meta._replace(params=train_part))
    out = StepOutput(loss, jnp.mean(metrics.loss, axis=0),
                     (None if metrics.accuracy is None
                      else jnp.mean(metrics.accuracy, axis=0)),
                     _global_norm(grads))
    return MetaState(state.step + 1, meta, opt_state), out

  if steps_per_call == 1:
    step = one_step
  else:
    def step(state, data, key, count=None):
      if count is None:
        return jax.lax.scan(lambda s, _: one_step(s, data, key), state,
                            length=steps_per_call)
      # The first ``count`` meta-steps run, the rest pass the state through
      # with zero metrics: one program serves every call length.
      run, out_shape = _traced_once(one_step, state, data, key)
      def skip(s):
        return s, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                               out_shape[1])
      def body(s, i):
        return jax.lax.cond(i < count, lambda s: run(s, data, key), skip, s)
      return jax.lax.scan(body, state, jnp.arange(steps_per_call))
  if jit:
    step = jax.jit(step, donate_argnums=(0,) if donate else (),
                   compiler_options=compilation_cache.compile_options(
                       cpu_llvm_level))
  return step
