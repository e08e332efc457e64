"""Few-shot evaluation on a fixed task set: mean accuracy with a 95% CI."""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metalearn import core
from metalearn.types import ApplyFn, PyTree, Task


class EvalResult(NamedTuple):
  """Accuracy over a task set after ``inner_steps`` inner steps.

  Attributes:
    accuracy: mean query accuracy after the last inner step.
    ci95: half-width of the 95% confidence interval, 1.96 std / sqrt(n).
    std: standard deviation of the accuracy across tasks.
    loss: mean query loss after the last inner step.
    step_accuracy: [inner_steps] mean accuracy after each inner step.
    step_loss: [inner_steps] mean query loss after each inner step.
    task_accuracy: [num_tasks] final accuracy of every task.
    task_step_loss: [num_tasks, inner_steps] each task's adaptation trajectory.
    num_tasks: n.
    inner_steps: inner steps used (may differ from training).
  """
  accuracy: float
  ci95: float
  std: float
  loss: float
  step_accuracy: np.ndarray
  step_loss: np.ndarray
  task_accuracy: np.ndarray
  task_step_loss: np.ndarray
  num_tasks: int
  inner_steps: int

  def summary(self) -> dict:
    """JSON-friendly dict (lists instead of arrays, per-task data dropped)."""
    return {
        "accuracy": self.accuracy, "ci95": self.ci95, "std": self.std,
        "loss": self.loss, "step_accuracy": self.step_accuracy.tolist(),
        "step_loss": self.step_loss.tolist(), "num_tasks": self.num_tasks,
        "inner_steps": self.inner_steps,
    }


@functools.partial(jax.jit,
                   static_argnames=("apply_fn", "step_aware", "batching"))
def _chunk_metrics(apply_fn, params, inner_lrs, tasks, *, step_aware,
                   batching):
  run = functools.partial(core.adapt, apply_fn, params, inner_lrs,
                          first_order=True, step_aware=step_aware)
  if batching == "map":
    return jax.lax.map(lambda t: run(t)[1], tasks)
  return jax.vmap(run)(tasks)[1]


def evaluate(apply_fn: ApplyFn,
             params: PyTree,
             inner_lrs: PyTree,
             tasks: Task,
             *,
             inner_steps: int,
             step_aware: bool = False,
             chunk_size: int = 100,
             batching: str = "vmap") -> EvalResult:
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
    batching: ``"vmap"`` or ``"map"`` over the tasks of a chunk (``"map"`` is
      faster for conv nets on CPU), as in :func:`metalearn.core.meta_loss`.

  Returns:
    An :class:`EvalResult`.
  """
  if inner_steps < 1:
    raise ValueError(f"inner_steps (test inner steps) must be >= 1, got "
                     f"{inner_steps}.")
  if batching not in ("vmap", "map"):
    raise ValueError(f"batching must be 'vmap' or 'map', got {batching!r}.")
  lrs = core.extend_inner_lrs(inner_lrs, inner_steps)
  num_tasks = int(tasks.support_y.shape[0])
  chunk = max(1, min(chunk_size, num_tasks))
  losses, accs = [], []
  for start in range(0, num_tasks, chunk):
    part = jax.tree.map(lambda x: x[start:start + chunk], tasks)
    n = int(part.support_y.shape[0])
    if n < chunk:  # pad with copies of the first task; dropped below.
      part = jax.tree.map(
          lambda x: jnp.concatenate(
              [x, jnp.repeat(x[:1], chunk - n, axis=0)]), part)
    metrics = _chunk_metrics(apply_fn, params, lrs, part,
                             step_aware=step_aware, batching=batching)
    losses.append(np.asarray(metrics.loss)[:n])
    accs.append(np.asarray(metrics.accuracy)[:n])
  loss, acc = np.concatenate(losses), np.concatenate(accs)
  final = acc[:, -1]
  std = float(np.std(final))
  return EvalResult(
      accuracy=float(np.mean(final)), ci95=1.96 * std / math.sqrt(num_tasks),
      std=std, loss=float(np.mean(loss[:, -1])),
      step_accuracy=acc.mean(axis=0), step_loss=loss.mean(axis=0),
      task_accuracy=final, task_step_loss=loss, num_tasks=num_tasks,
      inner_steps=inner_steps)


def format_table(result: EvalResult, title: str = "test") -> str:
  """A small plain-text table of the per-step accuracy and the final CI."""
  lines = [f"{title}: {100 * result.accuracy:.2f}% ± {100 * result.ci95:.2f} "
           f"(95% CI, {result.num_tasks} tasks, std {100 * result.std:.2f}, "
           f"{result.inner_steps} inner steps)",
           "  step | query acc | query loss"]
  for i, (a, l) in enumerate(zip(result.step_accuracy, result.step_loss), 1):
    lines.append(f"  {i:>4} | {100 * a:8.2f}% | {l:10.4f}")
  return "\n".join(lines)
