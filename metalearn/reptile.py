"""Reptile's outer rule (Nichol et al. 2018): move towards the adapted weights.

Reptile has no meta-gradient: it adapts to each task with ordinary inner
steps and then moves the initialisation towards the adapted weights. Here
that move is a pseudo-gradient, ``params - mean_over_tasks(adapted)``, handed
to the outer optax optimizer: plain SGD with rate ``epsilon`` gives the
paper's interpolation ``params + epsilon (adapted - params)``.

During meta-training Reptile has no query set: every labelled example of a
task (support and query together) trains the inner loop, full batch at each
step, with the algorithm's inner update (:mod:`metalearn.rules`: SGD with
the inner rates, or Adam with ``beta1 = 0`` as in the paper).
"""

from typing import Optional

import jax
import jax.numpy as jnp

from metalearn import rules
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, Array, EpisodeMask, PyTree, StepMetrics
from metalearn.types import Task


def training_task(task: Task) -> Task:
  """One task whose support and query are both all of its examples (the
  real ones of a padded task)."""
  x = jnp.concatenate([task.support_x, task.query_x])
  y = jnp.concatenate([task.support_y, task.query_y])
  if task.mask is None:
    return Task(x, y, x, y)
  real = jnp.concatenate([task.mask.support, task.mask.query])
  return Task(x, y, x, y, EpisodeMask(real, real))


def _move(problem: rules.Problem, trainable, tasks: Task, step_weights):
  """``(params - mean adapted params)`` over the task batch.

  Returns ``((loss, StepMetrics), move)``: the training loss after the last
  inner step (task mean) and the per-task training metrics after each inner
  step, [num_tasks, inner_steps].
  """
  del step_weights  # No query loss to weigh.
  params, inner_lrs = problem.split(trainable)
  adapted, metrics = problem.adapt_batch(params, inner_lrs,
                                         jax.vmap(training_task)(tasks))
  adapted = jax.lax.stop_gradient(adapted)
  move = jax.tree.map(lambda p, a: p - jnp.mean(a, axis=0), params, adapted)
  return (jnp.mean(metrics.loss[:, -1]), metrics), move


REPTILE = rules.OuterRule("move towards the adapted weights", _move,
                          learns_inner_lrs=False, step_metrics_all_steps=True)


def direction(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
              tasks: Task, *, inner: Optional[rules.InnerUpdate] = None,
              objective: Objective = CLASSIFICATION,
              batching: str = "vmap") -> tuple[PyTree, Array, StepMetrics]:
  """Reptile's move over a task batch, outside a meta-step.

  Args:
    apply_fn: ``apply(params, x) -> outputs``.
    params: the initialisation.
    inner_lrs: the inner rates (``[inner_steps]`` per leaf, ``None`` frozen).
    tasks: a task batch with a leading [num_tasks] axis; each task trains on
      its support and query examples together.
    inner: the inner update (default SGD with ``inner_lrs``).
    objective: the inner loss and metric.
    batching: ``vmap`` or ``map`` over the tasks.

  Returns:
    ``(params - mean adapted params, loss, StepMetrics [T, inner_steps])``.
  """
  problem = rules.make_problem(apply_fn, lambda p: (p, inner_lrs),
                               inner=inner or rules.sgd(), batching=batching,
                               first_order=True, objective=objective)
  (loss, metrics), move = REPTILE.direction(problem, params, tasks, None)
  return move, loss, metrics
