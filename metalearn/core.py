"""The one code path for MAML, FOMAML, MAML++, Meta-SGD, ANIL and Reptile.

The algorithms differ only in data, never in code (:mod:`metalearn.algorithms`
names the settings):

* ``first_order`` (static bool) wraps each inner gradient in ``stop_gradient``
  (FOMAML) or lets the meta-gradient flow through it (second-order MAML).
* ``step_weights`` ([inner_steps]) weighs the query loss after every inner step:
  one-hot on the last step is plain MAML; MAML++'s multi-step loss anneals it.
  ``None`` means the last step alone and skips the query set after the earlier
  steps (the same loss and gradient for less work).
* ``inner_lrs`` is a pytree shaped like the parameters whose leaves carry a
  leading ``[inner_steps]`` axis: fixed for MAML, meta-learned for MAML++ (LSLR),
  per-element for Meta-SGD, ``None`` for a leaf the inner loop never touches
  (ANIL's body): no inner gradient is computed for such a leaf.
* ``objective`` (:mod:`metalearn.objectives`) is the loss of both loops and
  the metric: cross-entropy and accuracy by default, mean squared error for
  regression.
"""

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from metalearn import masking
from metalearn import objectives
from metalearn import task_copies
from metalearn.input_checks import validate_inner_lrs
from metalearn.input_checks import validate_task
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, Array, PyTree, StepMetrics, Task
from metalearn.types import is_frozen


cross_entropy = objectives.cross_entropy
accuracy = objectives.accuracy


def _split_adapted(params: PyTree, inner_lrs: PyTree):
  """Flattens; returns (leaves, treedef, indices of adapted leaves, lrs)."""
  leaves, treedef = jax.tree.flatten(params)
  lrs = jax.tree.leaves(inner_lrs, is_leaf=is_frozen)
  idx = tuple(i for i, lr in enumerate(lrs) if lr is not None)
  return leaves, treedef, idx, lrs


class TaskLosses(NamedTuple):
  """One task's losses as functions of the parameters and the inner step.

  Attributes:
    support_loss: ``support_loss(params, step) -> scalar``.
    query_metrics: ``query_metrics(params, step) -> StepMetrics`` (loss and
      metric of the query set; metric ``None`` without one).
  """
  support_loss: Callable[[PyTree, Array], Array]
  query_metrics: Callable[[PyTree, Array], StepMetrics]


def task_losses(apply_fn: ApplyFn, task: Task, *, objective: Objective,
                step_aware: bool) -> TaskLosses:
  """The support loss and query metrics of ``task`` that every inner loop
  (SGD, Adam, proximal SGD) evaluates; a step-aware model gets the step.
  A padded task (``task.mask``) scores its real entries only
  (:func:`metalearn.masking.task_losses`)."""
  if task.mask is not None:
    return TaskLosses(*masking.task_losses(
        apply_fn, task, objective=objective, step_aware=step_aware))

  def call(p, x, step):
    return apply_fn(p, x, step) if step_aware else apply_fn(p, x)

  def support_loss(p, step):
    return objective.loss(call(p, task.support_x, step), task.support_y)

  def query_metrics(p, step):
    out = call(p, task.query_x, step)
    return StepMetrics(objective.loss(out, task.query_y),
                       None if objective.metric is None
                       else objective.metric(out, task.query_y))
  return TaskLosses(support_loss, query_metrics)


def adapt(apply_fn: ApplyFn,
          params: PyTree,
          inner_lrs: PyTree,
          task: Task,
          *,
          first_order: bool = False,
          step_aware: bool = False,
          remat: bool = False,
          unroll: int | bool = 1,
          query_every_step: bool = True,
          objective: Objective = CLASSIFICATION
         ) -> tuple[PyTree, StepMetrics]:
  """Runs the inner loop on one task with ``lax.scan`` over the steps.

  Each step takes one SGD step on the support loss with that step's
  learning rates, then (with ``query_every_step``) measures the query loss
  and metric.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits [B, n_way]`` (or
      ``apply_fn(params, x, step)`` with ``step_aware=True``).
    params: the initial parameters (the meta-learned initialisation).
    inner_lrs: learning rates shaped like ``params`` with a leading
      ``[inner_steps]`` axis; ``None`` leaves are not adapted (and not
      differentiated in the inner loop).
    task: one task, ``support_x`` [S, ...], ``support_y`` [S], ``query_x``
      [Q, ...], ``query_y`` [Q].
    first_order: wrap the inner gradients in ``stop_gradient`` (FOMAML).
    step_aware: pass the inner step index to ``apply_fn`` (MAML++ per-step
      batch-norm parameters).
    remat: ``jax.checkpoint`` each inner step (less memory for second-order
      MAML, one extra forward pass per step on the backward pass).
    unroll: forwarded to ``lax.scan`` (``True`` unrolls every step).
    query_every_step: measure the query set after every inner step (MAML++'s
      multi-step loss, evaluation curves); ``False`` runs the query set once,
      after the last step: all that MAML's meta-loss needs, and with 15 query
      images per class against 1 support image, most of the work it saves.
    objective: the loss of both loops and the metric
      (:mod:`metalearn.objectives`; softmax cross-entropy and accuracy by
      default).

  Returns:
    ``(adapted_params, StepMetrics(loss [Q], accuracy [Q]))`` with the query
    metrics after each inner step (``Q = inner_steps``), or after the last one
    only (``Q = 1``) without ``query_every_step``; ``accuracy`` is ``None``
    for an objective without a metric.
  """
  inner_steps = validate_inner_lrs(params, inner_lrs)
  validate_task(task, objective=objective)
  leaves, treedef, idx, lr_leaves = _split_adapted(params, inner_lrs)

  losses = task_losses(apply_fn, task, objective=objective,
                       step_aware=step_aware)

  def merge(adapted):
    full = list(leaves)
    for i, a in zip(idx, adapted):
      full[i] = a
    return jax.tree.unflatten(treedef, full)

  def support_loss(adapted, step):
    return losses.support_loss(merge(adapted), step)

  def query_metrics(adapted, step):
    return losses.query_metrics(merge(adapted), step)

  def step_fn(adapted, xs):
    lrs, step = xs
    grads = jax.grad(support_loss)(adapted, step)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    adapted = [
        p - _broadcast_lr(lr, p) * g for p, g, lr in zip(adapted, grads, lrs)
    ]
    return adapted, (query_metrics(adapted, step) if query_every_step
                     else None)

  if remat:
    step_fn = jax.checkpoint(step_fn)
  xs = ([lr_leaves[i] for i in idx], jnp.arange(inner_steps, dtype=jnp.int32))
  init = [leaves[i] for i in idx]
  if inner_steps == 1:
    # No scan: the step sees the shared initial weights as they are, which
    # keeps vmapped convolutions ungrouped (4x faster on CPU, measured).
    adapted, metrics = step_fn(init, jax.tree.map(lambda a: a[0], xs))
  else:
    adapted, metrics = jax.lax.scan(step_fn, init, xs, unroll=unroll)
  if query_every_step:
    return merge(adapted), (jax.tree.map(lambda a: a[None], metrics)
                            if inner_steps == 1 else metrics)
  final = query_metrics(adapted, jnp.int32(inner_steps - 1))
  return merge(adapted), jax.tree.map(lambda a: a[None], final)


def _broadcast_lr(lr: Array, p: Array) -> Array:
  """A per-tensor scalar rate broadcasts as is; per-element matches p."""
  return lr if jnp.ndim(lr) == 0 else jnp.reshape(lr, jnp.shape(p))


def meta_loss(apply_fn: ApplyFn,
              params: PyTree,
              inner_lrs: PyTree,
              tasks: Task,
              step_weights: Optional[Array],
              *,
              first_order: bool = False,
              step_aware: bool = False,
              remat: bool = False,
              unroll: int | bool = 1,
              batching: str = "vmap",
              objective: Objective = CLASSIFICATION,
              body_head: Optional["BodyHead"] = None,
              make_runner: Optional[Callable[..., Callable]] = None,
              tile_params: bool = False
             ) -> tuple[Array, StepMetrics]:
  """Mean over the task batch of the weighted per-step query losses.

  Args:
    apply_fn, params, inner_lrs, first_order, step_aware, remat, unroll,
      objective: as in :func:`adapt`.
    body_head: when only the head adapts (ANIL), the model split in two;
      the body then runs once per task instead of once per inner step (see
      :func:`task_runner`).
    batching: ``"vmap"`` adapts all tasks at once (one wide program; the
      default); ``"map"`` runs them one after another with ``lax.map`` (less
      memory, and faster on CPU, where vmapped per-task conv kernels become
      slow grouped convolutions).
    tasks: a task batch, every field with a leading ``[num_tasks]`` axis.
    step_weights: [inner_steps] weights of the query loss after each inner step
      (MAML++'s multi-step loss), or ``None`` for the query loss after the
      last step alone (MAML/FOMAML): the same value and gradient as one-hot
      last-step weights, without running the query set after earlier steps.
    make_runner: ``make_runner(apply_fn, params, inner_lrs, **options) ->
      run(task)``, the inner update (:meth:`metalearn.rules.InnerUpdate.make`;
      default :func:`task_runner`, SGD).
    tile_params: with ``vmap``, map over one copy of ``params`` per task
      (:func:`metalearn.task_copies.tile`): the same loss and gradient,
      with the gradient's sum over tasks as a matmul.

  Returns:
    ``(loss, StepMetrics)``: the scalar meta-loss and the per-task query
    metrics, each [num_tasks, inner_steps] ([num_tasks, 1] with
    ``step_weights=None``).
  """
  inner_steps = validate_inner_lrs(params, inner_lrs)
  validate_task(tasks, batched=True, objective=objective)
  if step_weights is not None and jnp.shape(step_weights) != (inner_steps,):
    raise ValueError(f"step_weights must have shape [inner_steps] = "
                     f"({inner_steps},); got {jnp.shape(step_weights)}.")
  if batching not in ("vmap", "map"):
    raise ValueError(f"batching must be 'vmap' or 'map', got {batching!r}.")
  def runner(params):
    return (make_runner or task_runner)(
        apply_fn, params, inner_lrs, body_head=body_head,
        first_order=first_order, step_aware=step_aware, remat=remat,
        unroll=unroll, objective=objective,
        query_every_step=step_weights is not None)
  if batching == "vmap" and tile_params:
    copies = task_copies.tile(params, jax.tree.leaves(tasks)[0].shape[0])
    _, metrics = jax.vmap(lambda p, t: runner(p)(t))(copies, tasks)
  elif batching == "vmap":
    _, metrics = jax.vmap(runner(params))(tasks)
  else:
    metrics = jax.lax.map(lambda t: runner(params)(t)[1], tasks)
  if step_weights is None:
    return jnp.mean(metrics.loss[:, -1]), metrics
  return jnp.mean(metrics.loss @ step_weights), metrics


class BodyHead(NamedTuple):
  """A model split for head-only adaptation (ANIL).

  ``apply(params, x) == head(params, body(params, x))``; ``head`` reads only
  the parameters under ``'head'``.

  Attributes:
    body: ``body(params, x [B, ...]) -> features [B, F]``.
    head: ``head(params, features [B, F]) -> outputs [B, ...]``.
  """
  body: ApplyFn
  head: ApplyFn


def check_head_only(inner_lrs: PyTree) -> None:
  """ValueError naming the first adapted leaf outside ``'head'``."""
  for path, lr in jax.tree_util.tree_leaves_with_path(
      inner_lrs, is_leaf=is_frozen):
    if lr is not None and "'head'" not in jax.tree_util.keystr(path):
      raise ValueError(
          f"body_head: inner_lrs{jax.tree_util.keystr(path)} adapts a body "
          "parameter, but with body_head the body runs once per task; give "
          "every leaf outside 'head' a None rate (head-only adaptation).")


def task_runner(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree, *,
                body_head: Optional[BodyHead] = None, step_aware: bool = False,
                adapt_fn: Callable[..., tuple[PyTree, StepMetrics]] = adapt,
                **adapt_kwargs) -> Callable[[Task], tuple[PyTree, StepMetrics]]:
  """``run(task) -> adapt_fn(...)`` for one task, as vmap/map want it.

  ``adapt_fn`` is :func:`adapt` (SGD) or another inner loop with its
  signature (:func:`metalearn.rules.adam_adapt`).

  With ``body_head``, the body maps the support and query inputs to features
  once per task and the inner loop adapts the head on those features: the
  same losses and meta-gradient as adapting through the whole model (the
  body's weights do not change in the inner loop), without running the body
  on every inner step.
  """
  if body_head is None:
    return functools.partial(adapt_fn, apply_fn, params, inner_lrs,
                             step_aware=step_aware, **adapt_kwargs)
  if step_aware:
    raise ValueError("body_head needs a model without per-step batch norm "
                     "(step_aware=False).")
  check_head_only(inner_lrs)

  def run(task: Task):
    support, query = masking.body_features(body_head.body, params, task)
    features = task._replace(support_x=support, query_x=query)
    return adapt_fn(body_head.head, params, inner_lrs, features,
                    **adapt_kwargs)
  return run

