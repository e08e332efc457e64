"""Inner updates and outer rules as values, optax style.

An algorithm of :mod:`metalearn.algorithms` holds these values instead of
naming a behaviour that every module tests for:

* An :class:`InnerUpdate` says how one task adapts: plain SGD with the inner
  rates (:func:`sgd`, MAML's) or Adam (:func:`adam`, Reptile's). Its
  ``runner`` builds ``run(task) -> (adapted, StepMetrics)``.
* An :class:`OuterRule` says what the outer optimizer follows: the gradient
  of the query loss after adaptation (:data:`META_GRADIENT`) or another
  direction (:data:`metalearn.reptile.REPTILE`'s move towards the adapted
  weights). Its ``direction`` gets a :class:`Problem` and the trainable
  meta-parameters.

The meta-step (:mod:`metalearn.step`) and evaluation
(:mod:`metalearn.evaluate`) call these and import no algorithm by name: a
new gradient-based algorithm is one row of the table plus, if it needs one,
one rule module. The values are hashable (their hyperparameters are data),
so equal rules share compiled programs.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from metalearn import core
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, Array, PyTree, StepMetrics, Task


class InnerUpdate(NamedTuple):
  """How one task adapts in the inner loop.

  Attributes:
    name: the config's ``inner_optimizer`` value (``sgd``, ``adam``).
    runner: ``runner(apply_fn, params, inner_lrs, **hyper, **options) ->
      run(task) -> (adapted params, StepMetrics [Q])`` with the options of
      :func:`metalearn.core.task_runner` (``first_order``, ``step_aware``,
      ``remat``, ``unroll``, ``query_every_step``, ``objective``,
      ``body_head``).
    hyper: the update's hyperparameters, ``((name, value), ...)``.
  """
  name: str
  runner: Callable[..., Callable[[Task], tuple[PyTree, StepMetrics]]]
  hyper: tuple[tuple[str, Any], ...] = ()

  def make(self, apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
           **options) -> Callable[[Task], tuple[PyTree, StepMetrics]]:
    """``run(task) -> (adapted, StepMetrics)`` for one task."""
    return self.runner(apply_fn, params, inner_lrs, **dict(self.hyper),
                       **options)


def sgd() -> InnerUpdate:
  """SGD on the support loss with the inner rates (MAML's inner loop)."""
  return InnerUpdate("sgd", core.task_runner)


def adam_adapt(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
               task: Task, *, lr: float, b1: float = 0.0,
               first_order: bool = False, step_aware: bool = False,
               remat: bool = False, unroll: int | bool = 1,
               query_every_step: bool = True,
               objective: Objective = CLASSIFICATION
              ) -> tuple[PyTree, StepMetrics]:
  """Adam on the support loss for ``inner_steps`` steps, at rate ``lr``.

  As :func:`metalearn.core.adapt`, but each step is an Adam step;
  ``inner_lrs`` sets the number of steps (its leading axis) and which
  leaves adapt (``None``: frozen), not the rate.

  Returns:
    ``(adapted, StepMetrics)``: query metrics after each inner step,
    [inner_steps] (or [1], the last, without ``query_every_step``).
  """
  steps = core.validate_inner_lrs(params, inner_lrs)
  core.validate_task(task, objective=objective)
  frozen = jax.tree.map(lambda r: r is None, inner_lrs,
                        is_leaf=lambda x: x is None)
  optimizer = optax.adam(lr, b1=b1)

  losses = core.task_losses(apply_fn, task, objective=objective,
                            step_aware=step_aware)
  metrics = losses.query_metrics

  def step_fn(carry, step):
    p, state = carry
    grads = jax.grad(losses.support_loss)(p, step)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    updates, state = optimizer.update(grads, state, p)
    updates = jax.tree.map(lambda u, f: jnp.zeros_like(u) if f else u,
                           updates, frozen)
    p = optax.apply_updates(p, updates)
    return (p, state), (metrics(p, step) if query_every_step else None)

  if remat:
    step_fn = jax.checkpoint(step_fn)
  (adapted, _), per_step = jax.lax.scan(
      step_fn, (params, optimizer.init(params)),
      jnp.arange(steps, dtype=jnp.int32), unroll=unroll)
  if query_every_step:
    return adapted, per_step
  final = metrics(adapted, jnp.int32(steps - 1))
  return adapted, jax.tree.map(lambda a: a[None], final)


def _adam_runner(apply_fn, params, inner_lrs, *, lr, b1, **options):
  return core.task_runner(apply_fn, params, inner_lrs, adapt_fn=adam_adapt,
                          lr=lr, b1=b1, **options)


def adam(lr: float, b1: float = 0.0) -> InnerUpdate:
  """Adam on the support loss at rate ``lr`` (Reptile's: ``b1 = 0``)."""
  return InnerUpdate("adam", _adam_runner, (("lr", float(lr)),
                                            ("b1", float(b1))))


# config.inner_optimizer -> the InnerUpdate it builds from the config.
INNER_UPDATES: dict[str, Callable[[Any], InnerUpdate]] = {
    "sgd": lambda config: sgd(),
    "adam": lambda config: adam(config.inner_adam_lr),
}


class Problem(NamedTuple):
  """What an outer rule works on, closed over by the meta-step.

  Attributes:
    split: ``split(trainable) -> (params, inner_lrs)``.
    meta_loss: ``meta_loss(trainable, tasks, step_weights) -> (loss,
      StepMetrics [T, Q])``, the weighted query loss after adaptation.
    adapt_batch: ``adapt_batch(params, inner_lrs, tasks) -> (adapted [T,
      ...], StepMetrics [T, inner_steps])``: every task adapted, query
      metrics after every step.
    outputs: ``outputs(params, x [B, ...][, mask=]) -> [B, ...]``, the
      model (a step-aware one at inner step 0), for a rule that
      differentiates the losses itself (:mod:`metalearn.imaml`).
    objective: the loss of both loops and the metric.
    batching: ``vmap`` or ``map`` over the tasks of a batch.
  """
  split: Callable[[PyTree], tuple[PyTree, PyTree]]
  meta_loss: Callable[..., tuple[Array, StepMetrics]]
  adapt_batch: Callable[..., tuple[PyTree, StepMetrics]]
  outputs: Optional[Callable[[PyTree, Array], Array]] = None
  objective: Objective = CLASSIFICATION
  batching: str = "vmap"


def make_problem(apply_fn: ApplyFn, split: Callable[[PyTree], tuple], *,
                 inner: InnerUpdate, batching: str = "vmap",
                 tile_params: bool = False, **options) -> Problem:
  """The :class:`Problem` of a meta-step: ``inner`` adapts every task of a
  batch (``vmap`` or ``map``), with the options of
  :func:`metalearn.core.task_runner` (``first_order``, ``step_aware``,
  ``remat``, ``unroll``, ``objective``, ``body_head``); ``tile_params`` as
  in :func:`metalearn.core.meta_loss`."""
  if batching not in ("vmap", "map"):
    raise ValueError(f"batching must be 'vmap' or 'map', got {batching!r}.")

  def meta_loss(trainable, tasks, weights):
    params, lrs = split(trainable)
    return core.meta_loss(apply_fn, params, lrs, tasks, weights,
                          batching=batching, make_runner=inner.make,
                          tile_params=tile_params, **options)

  def adapt_batch(params, lrs, tasks):
    core.validate_task(tasks, batched=True,
                       objective=options.get("objective", CLASSIFICATION))
    run = inner.make(apply_fn, params, lrs, query_every_step=True, **options)
    if batching == "vmap":
      return jax.vmap(run)(tasks)
    return jax.lax.map(run, tasks)

  def outputs(params, x, **mask):
    if options.get("step_aware", False):
      return apply_fn(params, x, jnp.int32(0), **mask)
    return apply_fn(params, x, **mask)
  return Problem(split, meta_loss, adapt_batch, outputs,
                 options.get("objective", CLASSIFICATION), batching)


class OuterRule(NamedTuple):
  """What the outer optimizer follows.

  Attributes:
    name: a short name for tables and reports.
    direction: ``direction(problem, trainable, tasks, step_weights) ->
      ((loss, StepMetrics), updates direction shaped like trainable)``,
      handed to the outer optax optimizer as its "gradient".
    learns_inner_lrs: whether the direction covers the inner rates (a
      meta-gradient does; a move in weight space does not).
    step_metrics_all_steps: whether its metrics cover every inner step
      (else only the last, unless the multi-step loss is on).
  """
  name: str
  direction: Callable[..., tuple[tuple[Array, StepMetrics], PyTree]]
  learns_inner_lrs: bool = True
  step_metrics_all_steps: bool = False


def _meta_gradient(problem: Problem, trainable: PyTree, tasks: Task,
                   step_weights):
  return jax.value_and_grad(problem.meta_loss, has_aux=True)(
      trainable, tasks, step_weights)


META_GRADIENT = OuterRule("meta-gradient", _meta_gradient)
