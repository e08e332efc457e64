"""The "pretrained on all tasks" baseline of Finn et al. 2017 (section 5.1).

One network of the meta-learner's shape is trained by ordinary supervised
learning on batches pooled from the whole task distribution: every step
draws a task batch with the same sampler that meta-training uses and fits
the support and query points of all its tasks at once, with Adam. At test
time it is fine-tuned on a new task's K support points by inner SGD steps,
like MAML (:func:`metalearn.core.adapt` or :func:`metalearn.evaluate.evaluate`
with these parameters). Its step size is its own: the rate that suits
MAML's initialisation need not suit these weights (alpha = 0.01 diverged
after 3,000 pretraining steps of the 40-40 ReLU MLP, measured), so, as in
the paper ("using an automatically tuned step size"), :func:`tune_inner_lr`
picks it on validation tasks. For sinusoids the pooled targets average out
to one mean curve (about -1.6 cos x), which is why this baseline adapts
badly from a few points.
"""

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from metalearn import evaluate
from metalearn import inner_lrs as inner_lrs_lib
from metalearn import objectives
from metalearn.types import ApplyFn, Array, PyTree, Task

SampleFn = Callable[[Array], Task]


def pooled(tasks: Task) -> tuple[Array, Array]:
  """Every support and query point of a task batch as one batch.

  Args:
    tasks: a task batch, fields [T, N, ...] (support) and [T, Q, ...] (query).

  Returns:
    ``(x [T * (N + Q), ...], y [T * (N + Q), ...])``.
  """
  def flat(a):
    return a.reshape((-1, *a.shape[2:]))
  x = jnp.concatenate([flat(tasks.support_x), flat(tasks.query_x)])
  y = jnp.concatenate([flat(tasks.support_y), flat(tasks.query_y)])
  return x, y


def pretrain(apply_fn: ApplyFn,
             params: PyTree,
             sample_fn: SampleFn,
             *,
             steps: int,
             lr: float,
             seed: int,
             objective: objectives.Objective = objectives.REGRESSION
             ) -> PyTree:
  """Trains ``params`` on pooled tasks; one compiled ``lax.scan`` of steps.

  Args:
    apply_fn: the model's ``apply(params, x) -> outputs [B, ...]``.
    params: initial parameters (not modified).
    sample_fn: ``sample_fn(key) -> Task`` batch, jax-traceable (it runs
      inside the compiled loop), e.g. ``functools.partial(
      metalearn.data.sinusoid.sample_tasks, batch_size=25, k_shot=10,
      n_query=10)``. Step ``i`` uses ``fold_in(key(seed), i)``.
    steps: Adam steps, >= 1.
    lr: Adam's learning rate, > 0.
    seed: seeds the task draws, >= 0.
    objective: the loss to minimise on the pooled points (mean squared error
      by default).

  Returns:
    The trained parameters, shaped like ``params``.

  Raises:
    ValueError: naming ``steps``, ``lr`` or ``seed`` when out of range.
  """
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps must be an integer >= 1; got {steps!r}.")
  if not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
    raise ValueError(f"lr must be a finite number > 0; got {lr!r}.")
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0; got {seed!r}.")
  optimizer = optax.adam(lr)
  key = jax.random.key(seed)

  def loss_fn(p, x, y):
    return objective.loss(apply_fn(p, x), y)

  def step(carry, i):
    p, opt_state = carry
    x, y = pooled(sample_fn(jax.random.fold_in(key, i)))
    grads = jax.grad(loss_fn)(p, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), None

  @jax.jit
  def run(p):
    (p, _), _ = jax.lax.scan(step, (p, optimizer.init(p)),
                             jnp.arange(steps, dtype=jnp.int32))
    return p

  return run(params)


def tune_inner_lr(apply_fn: ApplyFn,
                  params: PyTree,
                  tasks: Task,
                  *,
                  inner_steps: int,
                  candidates: Sequence[float] = (0.02, 0.01, 0.005, 0.002,
                                                 0.001, 0.0005),
                  objective: objectives.Objective = objectives.REGRESSION
                  ) -> float:
  """The fine-tuning rate with the lowest query loss after ``inner_steps``.

  Args:
    apply_fn: the model's ``apply(params, x)`` (hashable).
    params: the parameters to fine-tune (e.g. from :func:`pretrain`).
    tasks: validation tasks with a leading [num_tasks] axis (not the test
      tasks, or the choice leaks into the score).
    inner_steps: SGD steps on each task's support set, >= 1.
    candidates: learning rates to try, each > 0; a rate whose loss is not
      finite (divergence) loses.
    objective: the loss of the inner steps and of the score.

  Returns:
    The best candidate.

  Raises:
    ValueError: naming ``candidates`` when empty or not all > 0.
  """
  if not candidates or not all(c > 0 for c in candidates):
    raise ValueError(f"candidates must be a non-empty sequence of rates > 0; "
                     f"got {candidates!r}.")

  def score(lr):
    lrs = inner_lrs_lib.fixed_inner_lrs(params, lr, inner_steps)
    loss = evaluate.evaluate(apply_fn, params, lrs, tasks,
                             inner_steps=inner_steps,
                             objective=objective).loss
    return loss if math.isfinite(loss) else math.inf

  return float(min(candidates, key=score))
