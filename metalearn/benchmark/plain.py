"""The plain meta-step every benchmark ratio is measured against.

A deliberately straightforward meta-step that shares no code with
:mod:`metalearn.core`: ``jit`` + ``vmap`` over tasks, the inner loop as a
Python ``for`` loop (unrolled), float32, one meta-step per dispatch (plus one
dispatch to sample the tasks), no remat, no donation. It computes what a
straightforward implementation of each algorithm computes: MAML and FOMAML
run the query set once, after the last inner step; MAML++ runs it after
every step for its multi-step loss; ANIL adapts the head alone. Written
independently of :func:`metalearn.core.adapt`, so the two check each other.
"""

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from metalearn import core
from metalearn import step as step_lib
from metalearn.types import Array, Task


class Problem(NamedTuple):
  """What a benchmarked meta-step computes, shared by both implementations.

  Attributes:
    apply_fn: the model's ``apply(params, x[, step])``.
    params: initial parameters.
    inner_lrs: ``[inner_steps]`` rate per leaf; ``None`` for a leaf the inner
      loop does not adapt (ANIL's body).
    weights_fn: ``meta_step -> [inner_steps]`` multi-step loss weights, or
      ``None``: the last step's query loss alone (MAML, FOMAML).
    task_fn: ``task_fn(key, data) -> Task`` batch.
    data: what ``task_fn`` samples from.
    first_order: no second-order terms.
    learn_inner_lrs: the outer optimizer also updates ``inner_lrs``.
    step_aware: ``apply_fn`` takes the inner step index.
    body_head: the model split for a head-only inner loop (ANIL), which the
      library's step uses to run the body once per task; ``None`` otherwise.
      The plain step always adapts through the whole model.
  """
  apply_fn: Callable[..., Array]
  params: object
  inner_lrs: object
  weights_fn: Optional[Callable[[Array], Array]]
  task_fn: Callable[[Array, Array], Task]
  data: Array
  first_order: bool
  learn_inner_lrs: bool
  step_aware: bool
  body_head: Optional[core.BodyHead] = None


def _sgd(params, grads, lrs, s: int):
  """One inner SGD step: ``w - lrs[s] * g`` per leaf.

  ``lrs`` leaves are [inner_steps] rates, or ``None`` for a leaf that is not
  adapted (returned unchanged).
  """
  return jax.tree.map(lambda a, w, g: w if a is None else w - a[s] * g,
                      lrs, params, grads, is_leaf=lambda a: a is None)


def make_plain_step(problem: Problem, optimizer: optax.GradientTransformation,
                    inner_steps: int):
  """The plain step as ``(sample, step)``, two separately jitted functions.

  ``sample(key, step, data) -> Task`` draws the batch from
  ``fold_in(key, step)`` (the same tasks as the library's step);
  ``step(state, tasks) -> (state, loss)`` is one meta-step.
  """
  p = problem

  def ce(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, labels).mean()

  def query_losses(params, lrs, task):
    """[inner_steps] query losses, or [1] (the last) without weights."""
    losses = []
    for s in range(inner_steps):
      if p.step_aware:
        f = lambda q, x, s=s: p.apply_fn(q, x, s)  # noqa: E731
      else:
        f = p.apply_fn
      loss = lambda q, f=f: ce(f(q, task.support_x), task.support_y)  # noqa
      grads = jax.grad(loss)(params)
      if p.first_order:
        grads = jax.lax.stop_gradient(grads)
      params = _sgd(params, grads, lrs, s)
      if p.weights_fn is not None or s == inner_steps - 1:
        losses.append(ce(f(params, task.query_x), task.query_y))
    return jnp.stack(losses)

  def meta_loss(train, inner_lrs, tasks, weights):
    params, lrs = ((train.params, train.inner_lrs) if p.learn_inner_lrs
                   else (train, inner_lrs))
    per_task = jax.vmap(query_losses, in_axes=(None, None, 0))(params, lrs,
                                                              tasks)
    return jnp.mean(per_task @ weights)

  @jax.jit
  def step(state, tasks):
    train = step_lib.trainable(state.meta, p.learn_inner_lrs)
    weights = (jnp.ones((1,)) if p.weights_fn is None
               else p.weights_fn(state.step))
    loss, grads = jax.value_and_grad(meta_loss)(
        train, state.meta.inner_lrs, tasks, weights)
    updates, opt_state = optimizer.update(grads, state.opt_state, train)
    train = optax.apply_updates(train, updates)
    meta = (train if p.learn_inner_lrs
            else state.meta._replace(params=train))
    return step_lib.MetaState(state.step + 1, meta, opt_state), loss

  @jax.jit
  def sample(key, step, data):
    return p.task_fn(jax.random.fold_in(key, step), data)

  return sample, step
