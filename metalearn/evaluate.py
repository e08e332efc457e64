"""Few-shot evaluation on a fixed task set: mean accuracy with a 95% CI."""

import functools
import math
from typing import Iterator, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from metalearn import core
from metalearn import inner_lrs as inner_lrs_lib
from metalearn import masking
from metalearn import rules
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, PyTree, Task


class EvalResult(NamedTuple):
  """Accuracy over a task set after ``inner_steps`` inner steps.

  For an objective without a metric (regression) the accuracy fields are
  ``None`` and the loss carries the result (``loss_ci95``).

  Attributes:
    accuracy: mean query accuracy after the last inner step.
    ci95: half-width of the 95% confidence interval, 1.96 std / sqrt(n).
    std: standard deviation of the accuracy across tasks.
    loss: mean query loss after the last inner step.
    loss_ci95: half-width of the loss's 95% confidence interval.
    step_accuracy: [inner_steps] mean accuracy after each inner step.
    step_loss: [inner_steps] mean query loss after each inner step.
    task_accuracy: [num_tasks] final accuracy of every task.
    task_step_loss: [num_tasks, inner_steps] each task's adaptation trajectory.
    num_tasks: n.
    inner_steps: inner steps used (may differ from training).
    task_initial_loss: [num_tasks] query loss before any inner step (the
      meta-learned parameters themselves).
    task_initial_accuracy: [num_tasks] the same for accuracy.
    task_step_accuracy: [num_tasks, inner_steps] each task's accuracy after
      each inner step.
  """
  accuracy: Optional[float]
  ci95: Optional[float]
  std: Optional[float]
  loss: float
  step_accuracy: Optional[np.ndarray]
  step_loss: np.ndarray
  task_accuracy: Optional[np.ndarray]
  task_step_loss: np.ndarray
  num_tasks: int
  inner_steps: int
  loss_ci95: float = 0.0
  task_initial_loss: Optional[np.ndarray] = None
  task_initial_accuracy: Optional[np.ndarray] = None
  task_step_accuracy: Optional[np.ndarray] = None

  def summary(self) -> dict:
    """JSON-friendly dict (lists instead of arrays, per-task data dropped)."""
    return {
        "accuracy": self.accuracy, "ci95": self.ci95, "std": self.std,
        "loss": self.loss, "loss_ci95": self.loss_ci95,
        "step_accuracy": (None if self.step_accuracy is None
                          else self.step_accuracy.tolist()),
        "step_loss": self.step_loss.tolist(), "num_tasks": self.num_tasks,
        "inner_steps": self.inner_steps,
    }


@functools.partial(jax.jit, static_argnames=(
    "apply_fn", "step_aware", "batching", "objective", "body_head", "inner"))
def _chunk_metrics(apply_fn, params, inner_lrs, tasks, *, step_aware,
                   batching, objective, body_head, inner):
  run = inner.make(apply_fn, params, inner_lrs, body_head=body_head,
                   first_order=True, step_aware=step_aware,
                   objective=objective)
  if batching == "map":
    return jax.lax.map(lambda t: run(t)[1], tasks)
  return jax.vmap(run)(tasks)[1]


@functools.partial(jax.jit, static_argnames=(
    "apply_fn", "step_aware", "batching", "objective"))
def _initial_metrics(apply_fn, params, tasks, *, step_aware, batching,
                     objective):
  """Query loss and metric (or None) of every task before adaptation."""
  def score(task):
    kw = masking.model_kwargs(None if task.mask is None else task.mask.query)
    out = (apply_fn(params, task.query_x, 0, **kw) if step_aware
           else apply_fn(params, task.query_x, **kw))
    if task.mask is not None:
      return tuple(masking.scores(
          objective, out, task.query_y, task.mask.query,
          masking.task_present(task, objective, out.shape[-1])))
    metric = (None if objective.metric is None
              else objective.metric(out, task.query_y))
    return objective.loss(out, task.query_y), metric
  if batching == "map":
    return jax.lax.map(score, tasks)
  return jax.vmap(score)(tasks)


def ci95(values: np.ndarray) -> float:
  """Half-width of the 95% confidence interval of the mean of ``values``
  [n]: 1.96 std / sqrt(n)."""
  return 1.96 * float(np.std(values)) / math.sqrt(len(values))


BATCHINGS = ("auto", "vmap", "map")


def resolve_batching(batching: str) -> str:
  """``auto`` -> ``map`` on CPU, ``vmap`` elsewhere; checks the name.

  An evaluation's cost is its query sets' forward passes. On CPU, tasks one
  after another ran them faster than vmapped (conv-4 with per-task
  weights, docs/benchmarks.md); an accelerator wants the tasks in parallel.
  """
  if batching not in BATCHINGS:
    raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}; got "
                     f"{batching!r}.")
  if batching == "auto":
    return "map" if jax.default_backend() == "cpu" else "vmap"
  return batching


def check_options(inner_steps: int, batching: str) -> str:
  """The resolved ``batching`` (:func:`resolve_batching`); ValueError
  naming ``inner_steps`` (< 1) or ``batching`` (unknown)."""
  if inner_steps < 1:
    raise ValueError(f"inner_steps (test inner steps) must be >= 1, got "
                     f"{inner_steps}.")
  return resolve_batching(batching)


def task_chunks(tasks: Task, chunk_size: int) -> Iterator[tuple[Task, int]]:
  """``tasks`` in chunks of one shape, so each compiled call compiles once.

  Args:
    tasks: a task set with a leading [num_tasks] axis.
    chunk_size: tasks per chunk; the last chunk is padded with copies of
      its first task.

  Yields:
    ``(chunk, n)``: a task set with a leading [min(chunk_size, num_tasks)]
    axis, of which the first ``n`` tasks are real.
  """
  num_tasks = int(tasks.support_y.shape[0])
  chunk = max(1, min(chunk_size, num_tasks))
  for start in range(0, num_tasks, chunk):
    part = jax.tree.map(lambda x: x[start:start + chunk], tasks)
    n = int(part.support_y.shape[0])
    if n < chunk:
      part = jax.tree.map(
          lambda x: jnp.concatenate(
              [x, jnp.repeat(x[:1], chunk - n, axis=0)]), part)
    yield part, n


def evaluate(apply_fn: ApplyFn,
             params: PyTree,
             inner_lrs: PyTree,
             tasks: Task,
             *,
             inner_steps: int,
             step_aware: bool = False,
             chunk_size: int = 100,
             batching: str = "auto",
             objective: Objective = CLASSIFICATION,
             body_head: Optional[core.BodyHead] = None,
             inner: Optional[rules.InnerUpdate] = None,
             initial: bool = True) -> EvalResult:
  """Adapts to every task of a fixed set and scores the query sets.

  Args:
    apply_fn: the model's apply function (hashable: it is a static argument).
    params: meta-learned initial parameters.
    inner_lrs: inner learning rates; cut or extended to ``inner_steps`` by
      repeating the last step's rates.
    tasks: task set with a leading [num_tasks] axis.
    inner_steps: inner steps at test time, >= 1.
    step_aware: ``apply_fn`` takes the inner step index.
    chunk_size: tasks per compiled call (memory bound); the last chunk is
      padded, so one shape compiles once.
    batching: ``"vmap"`` or ``"map"`` over the tasks of a chunk, as in
      :func:`metalearn.core.meta_loss`, or ``"auto"``
      (:func:`resolve_batching`: ``"map"`` on CPU).
    objective, body_head: as in :func:`metalearn.core.meta_loss` (hashable:
      static arguments).
    inner: how each task adapts (:class:`metalearn.rules.InnerUpdate`,
      hashable: a static argument); default SGD with ``inner_lrs``.
    initial: also score the query sets with ``params`` as they are, before
      any step (``task_initial_*``); ``False`` leaves those ``None`` (when
      ``inner`` gives each task another head, :func:`metalearn.proto.at_width`).

  Returns:
    An :class:`EvalResult`.
  """
  batching = check_options(inner_steps, batching)
  lrs = inner_lrs_lib.extend_inner_lrs(inner_lrs, inner_steps)
  num_tasks = int(tasks.support_y.shape[0])
  losses, accs, before = [], [], []
  for part, n in task_chunks(tasks, chunk_size):
    metrics = _chunk_metrics(apply_fn, params, lrs, part,
                             step_aware=step_aware, batching=batching,
                             objective=objective, body_head=body_head,
                             inner=inner or rules.sgd())
    losses.append(np.asarray(metrics.loss)[:n])
    if metrics.accuracy is not None:
      accs.append(np.asarray(metrics.accuracy)[:n])
    if initial:
      before.append(jax.tree.map(lambda x: np.asarray(x)[:n], _initial_metrics(
          apply_fn, params, part, step_aware=step_aware, batching=batching,
          objective=objective)))
  loss = np.concatenate(losses)
  acc = np.concatenate(accs) if accs else None
  final = None if acc is None else acc[:, -1]
  return EvalResult(
      accuracy=None if acc is None else float(np.mean(final)),
      ci95=None if acc is None else ci95(final),
      std=None if acc is None else float(np.std(final)),
      loss=float(np.mean(loss[:, -1])),
      step_accuracy=None if acc is None else acc.mean(axis=0),
      step_loss=loss.mean(axis=0), task_accuracy=final, task_step_loss=loss,
      num_tasks=num_tasks, inner_steps=inner_steps,
      loss_ci95=ci95(loss[:, -1]),
      task_initial_loss=(np.concatenate([l for l, _ in before])
                         if initial else None),
      task_initial_accuracy=None if acc is None or not initial else
      np.concatenate([a for _, a in before]),
      task_step_accuracy=acc)


def format_table(result: EvalResult, title: str = "test") -> str:
  """A small plain-text table of the per-step accuracy and the final CI."""
  if result.accuracy is None:
    lines = [f"{title}: query loss {result.loss:.4f} ± "
             f"{result.loss_ci95:.4f} (95% CI, {result.num_tasks} tasks, "
             f"{result.inner_steps} inner steps)", "  step | query loss"]
    lines += [f"  {i:>4} | {l:10.4f}"
              for i, l in enumerate(result.step_loss, 1)]
    return "\n".join(lines)
  lines = [f"{title}: {100 * result.accuracy:.2f}% ± {100 * result.ci95:.2f} "
           f"(95% CI, {result.num_tasks} tasks, std {100 * result.std:.2f}, "
           f"{result.inner_steps} inner steps)",
           "  step | query acc | query loss"]
  for i, (a, l) in enumerate(zip(result.step_accuracy, result.step_loss), 1):
    lines.append(f"  {i:>4} | {100 * a:8.2f}% | {l:10.4f}")
  return "\n".join(lines)
