"""Reptile's outer direction (Nichol et al. 2018) on the one inner loop.

Reptile has no meta-gradient: it adapts to each task with ordinary inner
steps and then moves the initialisation towards the adapted weights. Here
that move is a pseudo-gradient, ``params - mean_over_tasks(adapted)``, handed
to the outer optax optimizer: plain SGD with rate ``epsilon`` gives the
paper's interpolation ``params + epsilon (adapted - params)``.

During meta-training Reptile has no query set: every labelled example of a
task (support and query together) trains the inner loop, full batch at each
step. The inner steps are SGD with the given ``inner_lrs``
(:func:`metalearn.core.adapt`) or Adam with ``beta1 = 0`` as in the paper.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from metalearn import core
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, Array, PyTree, StepMetrics, Task

INNER_OPTIMIZERS = ("sgd", "adam")


def training_task(task: Task) -> Task:
  """One task whose support and query are both all of its examples."""
  x = jnp.concatenate([task.support_x, task.query_x])
  y = jnp.concatenate([task.support_y, task.query_y])
  return Task(x, y, x, y)


def adam_adapt(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
               task: Task, *, lr: float,
               objective: Objective = CLASSIFICATION
              ) -> tuple[PyTree, StepMetrics]:
  """Adam (``beta1 = 0``) on the support loss for ``inner_steps`` steps.

  ``inner_lrs`` sets the number of steps (its leading axis) and which leaves
  adapt (``None``: frozen); the rate is ``lr``. Returns the adapted
  parameters and the query metrics after each step, [inner_steps].
  """
  steps = core.validate_inner_lrs(params, inner_lrs)
  frozen = jax.tree.map(lambda lr_: lr_ is None, inner_lrs,
                        is_leaf=lambda x: x is None)
  optimizer = optax.adam(lr, b1=0.0)

  def loss(p):
    return objective.loss(apply_fn(p, task.support_x), task.support_y)

  def metrics(p):
    out = apply_fn(p, task.query_x)
    return StepMetrics(objective.loss(out, task.query_y),
                       None if objective.metric is None
                       else objective.metric(out, task.query_y))

  def step(carry, _):
    p, state = carry
    grads = jax.grad(loss)(p)
    updates, state = optimizer.update(grads, state, p)
    updates = jax.tree.map(lambda u, f: jnp.zeros_like(u) if f else u,
                           updates, frozen)
    p = optax.apply_updates(p, updates)
    return (p, state), metrics(p)

  (adapted, _), per_step = jax.lax.scan(
      step, (params, optimizer.init(params)), length=steps)
  return adapted, per_step


def direction(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
              tasks: Task, *, objective: Objective = CLASSIFICATION,
              inner_optimizer: str = "sgd", adam_lr: float = 1e-3,
              batching: str = "vmap") -> tuple[PyTree, Array, StepMetrics]:
  """Reptile's pseudo-gradient over a task batch.

  Args:
    apply_fn: ``apply(params, x) -> outputs``.
    params: the initialisation.
    inner_lrs: SGD rates (``[inner_steps]`` per leaf, ``None`` frozen).
    tasks: a task batch with a leading [num_tasks] axis; each task trains
      on its support and query examples together.
    objective: the inner loss and metric.
    inner_optimizer: ``sgd`` (``inner_lrs``) or ``adam`` (rate ``adam_lr``).
    adam_lr: Adam's inner rate.
    batching: ``vmap`` or ``map`` over the tasks.

  Returns:
    ``(params - mean adapted params, loss, StepMetrics)``: the training loss
    after the last inner step (task mean) and the per-task training metrics
    after each inner step, [num_tasks, inner_steps].
  """
  if inner_optimizer not in INNER_OPTIMIZERS:
    raise ValueError(f"inner_optimizer must be one of "
                     f"{', '.join(INNER_OPTIMIZERS)}; got {inner_optimizer!r}.")
  if batching not in ("vmap", "map"):
    raise ValueError(f"batching must be 'vmap' or 'map', got {batching!r}.")
  core.validate_task(tasks, batched=True, objective=objective)
  if inner_optimizer == "adam":
    run = functools.partial(adam_adapt, apply_fn, params, inner_lrs,
                            lr=adam_lr, objective=objective)
  else:
    run = functools.partial(core.adapt, apply_fn, params, inner_lrs,
                            first_order=True, objective=objective)
  run_one = lambda t: run(training_task(t))
  if batching == "vmap":
    adapted, metrics = jax.vmap(run_one)(tasks)
  else:
    adapted, metrics = jax.lax.map(run_one, tasks)
  adapted = jax.lax.stop_gradient(adapted)
  move = jax.tree.map(lambda p, a: p - jnp.mean(a, axis=0), params, adapted)
  return move, jnp.mean(metrics.loss[:, -1]), metrics
