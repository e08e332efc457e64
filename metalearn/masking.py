"""Padded tasks: losses, metrics and batch statistics of the real entries.

An episode of any way and shot (:mod:`metalearn.data.shapes`) is padded to
the largest shape, so that one compiled step serves every episode, and
carries an :class:`~metalearn.types.EpisodeMask` (``task.mask``): bool
``support`` [S] and ``query`` [Q], True for a real example. A task whose
``mask`` is ``None`` takes none of this: the fixed-shape path is unchanged.
For a padded task:

* The loss and the metric are means over the real examples only: each
  example is scored alone (the objective on a batch of one), and padded
  examples are left out of the sum and the count.
* A class is present when a real support example has its label. Every other
  output column (ways beyond this episode's, or a head wider than the task's
  classes) gets the logit :data:`ABSENT_LOGIT`: its softmax probability
  underflows to exactly 0, so it takes no probability mass, no argmax and no
  gradient.
* The model gets the example mask as ``mask=`` (``apply(params, x,
  mask=mask)``; the body and head of :class:`metalearn.models.Model` take
  it too): the transductive batch norm of the built-in models then
  normalises with the statistics of the real examples alone
  (:func:`masked_moments`), exactly those of the unpadded batch.

Padded examples may hold anything finite; the sampler gives them zero images
and the label :data:`PAD_LABEL`.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from metalearn.objectives import Objective
from metalearn.types import ApplyFn, Array, EpisodeMask, PyTree, StepMetrics
from metalearn.types import Task

PAD_LABEL = -1
# exp(ABSENT_LOGIT - max logit) is exactly 0 in float32 and float64 alike,
# and the value stays finite, so no inf or NaN reaches a gradient.
ABSENT_LOGIT = -1e9


def full_mask(tasks: Task) -> Task:
  """``tasks`` (one or a batch, classification) with every entry real.

  A task set of fewer classes than the model's head then hides the head's
  other classes (the learned head evaluated at a smaller way).
  """
  return tasks._replace(mask=EpisodeMask(
      jnp.ones(jnp.shape(tasks.support_y), bool),
      jnp.ones(jnp.shape(tasks.query_y), bool)))


def check_mask(task: Task, lead: int) -> None:
  """ValueError naming ``task.mask``'s field unless it is None or bool with
  the targets' ``lead`` leading sizes."""
  if task.mask is None:
    return
  for name, y_name in (("support", "support_y"), ("query", "query_y")):
    mask, y = getattr(task.mask, name), getattr(task, y_name)
    if (jnp.result_type(mask) != jnp.bool_
        or jnp.shape(mask) != jnp.shape(y)[:lead]):
      raise ValueError(
          f"task.mask.{name} must be bool with task.{y_name}'s leading "
          f"sizes {jnp.shape(y)[:lead]}; got {jnp.result_type(mask)} "
          f"{jnp.shape(mask)}.")


def model_kwargs(mask: Optional[Array]) -> dict:
  """The keywords that hand a model its example mask: none without one."""
  return {} if mask is None else {"mask": mask}


def masked_moments(x: Array, mask: Array) -> tuple[Array, Array]:
  """Per-channel mean and (biased) variance over the real rows.

  Args:
    x: [B, ..., C] activations.
    mask: bool [B], True for a real row.

  Returns:
    ``(mean, var)``, each [1, ..., 1, C]: the moments over every position of
    the real rows, as ``jnp.mean`` over the unpadded batch gives them.
  """
  rows = mask.reshape((-1,) + (1,) * (x.ndim - 1))
  axes = tuple(range(x.ndim - 1))
  positions = x.size // (x.shape[0] * x.shape[-1])
  count = jnp.maximum(jnp.sum(mask), 1) * positions
  mean = jnp.sum(jnp.where(rows, x, 0), axis=axes, keepdims=True) / count
  centred = jnp.where(rows, x - mean, 0)
  # A product: the derivative of jnp.square multiplies by a broadcast 2,
  # which XLA's CPU backend writes out at full size.
  var = jnp.sum(centred * centred, axis=axes, keepdims=True) / count
  return mean.astype(x.dtype), var.astype(x.dtype)


def present_classes(labels: Array, mask: Array, width: int) -> Array:
  """bool [width]: the classes that a real example of ``labels`` [N] has."""
  hits = (labels[:, None] == jnp.arange(width)[None, :]) & mask[:, None]
  return jnp.any(hits, axis=0)


def hide_absent(logits: Array, present: Array) -> Array:
  """``logits`` [B, C] with the columns of absent classes at
  :data:`ABSENT_LOGIT`; ``present`` bool [C]."""
  return jnp.where(present[None, :], logits, ABSENT_LOGIT)


def real_labels(labels: Array, mask: Optional[Array]) -> Array:
  """``labels`` with padded entries at :data:`PAD_LABEL` (in no class)."""
  return labels if mask is None else jnp.where(mask, labels, PAD_LABEL)


def masked_mean(values: Array, mask: Array) -> Array:
  """Mean of ``values`` [B] over the entries where ``mask`` [B]."""
  return (jnp.sum(jnp.where(mask, values, 0))
          / jnp.maximum(jnp.sum(mask), 1))


def _per_example(fn: Callable[[Array, Array], Array], outputs: Array,
                 targets: Array, mask: Array) -> Array:
  """``fn`` on each example alone, [B]; padded targets are made valid."""
  if jnp.issubdtype(targets.dtype, jnp.integer):
    rows = mask.reshape(mask.shape + (1,) * (targets.ndim - 1))
    targets = jnp.where(rows, targets, 0)
  return jax.vmap(lambda o, t: fn(o[None], t[None]))(outputs, targets)


def scores(objective: Objective, outputs: Array, targets: Array, mask: Array,
           present: Optional[Array]) -> StepMetrics:
  """Loss and metric (or None) of the real examples.

  Args:
    objective: the loss and metric.
    outputs: [B, ...] model outputs (logits [B, C] for classification).
    targets: [B, ...] targets.
    mask: bool [B], the real examples.
    present: bool [C], the present classes (columns of the others are
      hidden first), or None (regression).
  """
  if present is not None:
    outputs = hide_absent(outputs, present)
  loss = masked_mean(_per_example(objective.loss, outputs, targets, mask),
                     mask)
  metric = (None if objective.metric is None else masked_mean(
      _per_example(objective.metric, outputs, targets, mask), mask))
  return StepMetrics(loss, metric)


def task_present(task: Task, objective: Objective,
                 width: int) -> Optional[Array]:
  """The present classes of a padded classification task, else None."""
  if not objective.integer_targets:
    return None
  return present_classes(task.support_y, task.mask.support, width)


def body_features(body: ApplyFn, params: PyTree,
                  task: Task) -> tuple[Array, Array]:
  """``body(params, x)`` of the support and the query set, each with its
  example mask when the task is padded."""
  mask = task.mask
  return (body(params, task.support_x,
               **model_kwargs(None if mask is None else mask.support)),
          body(params, task.query_x,
               **model_kwargs(None if mask is None else mask.query)))


def task_losses(apply_fn: ApplyFn, task: Task, *, objective: Objective,
                step_aware: bool):
  """A padded task's ``(support_loss(params, step), query_metrics(params,
  step))``, as :func:`metalearn.core.task_losses` returns them."""
  mask = task.mask

  def call(p, x, rows, step):
    if step_aware:
      return apply_fn(p, x, step, mask=rows)
    return apply_fn(p, x, mask=rows)

  def score(p, x, y, rows, step):
    out = call(p, x, rows, step)
    return scores(objective, out, y, rows,
                  task_present(task, objective, out.shape[-1]))

  def support_loss(p, step):
    return score(p, task.support_x, task.support_y, mask.support, step).loss

  def query_metrics(p, step):
    return score(p, task.query_x, task.query_y, mask.query, step)
  return support_loss, query_metrics
