"""Test-time ensembles of meta-learned checkpoints (MAML++'s top-k).

Antoniou et al. 2019 report MAML++'s Omniglot and mini-ImageNet accuracies
with an ensemble of the five checkpoints that scored best on validation:
every member adapts to a test task on its own (its own initialisation and
inner rates, the same support set), and the members' predicted
probabilities on the query set (softmax of the logits) are averaged; the
ensemble predicts the class of highest mean probability.

:func:`query_outputs` gives one member's query outputs after adaptation on
every task of a fixed set, :func:`combine` scores the members' outputs
together, and :func:`evaluate_ensemble` does both. For an objective without
a metric (regression) the members' outputs are averaged and only the loss
is reported. :mod:`metalearn.checkpoints` keeps the top-k checkpoints and
:mod:`metalearn.train` reports the ensemble beside the single best.
"""

import functools
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metalearn import core
from metalearn import evaluate as evaluate_lib
from metalearn import inner_lrs as inner_lrs_lib
from metalearn import rules
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, Array, MetaParams, PyTree, Task


class EnsembleResult(NamedTuple):
  """The ensemble's scores over a task set.

  Attributes:
    accuracy: mean over tasks of the ensemble's query accuracy (``None``
      for an objective without a metric).
    ci95: half-width of its 95% confidence interval, 1.96 std / sqrt(n).
    std: standard deviation of the accuracy across tasks.
    loss: mean query loss of the ensemble's prediction (cross-entropy of
      the mean probabilities; the loss of the mean output for regression).
    loss_ci95: half-width of the loss's 95% confidence interval.
    task_accuracy: [num_tasks] the ensemble's accuracy on every task.
    task_loss: [num_tasks] the ensemble's loss on every task.
    member_accuracy: [k] each member's own mean accuracy on the same tasks
      (``None`` without a metric), in the order given.
    member_loss: [k] each member's own mean query loss, likewise.
    k: the number of members.
    num_tasks: n.
    inner_steps: inner steps every member took.
    steps: the members' meta-steps (checkpoint steps), in the order given;
      empty when not known.
  """
  accuracy: Optional[float]
  ci95: Optional[float]
  std: Optional[float]
  loss: float
  loss_ci95: float
  task_accuracy: Optional[np.ndarray]
  task_loss: np.ndarray
  member_accuracy: Optional[list[float]]
  member_loss: list[float]
  k: int
  num_tasks: int
  inner_steps: int
  steps: tuple[int, ...] = ()

  def summary(self) -> dict:
    """JSON-friendly dict (per-task data dropped)."""
    return {"accuracy": self.accuracy, "ci95": self.ci95, "std": self.std,
            "loss": self.loss, "loss_ci95": self.loss_ci95,
            "num_tasks": self.num_tasks, "inner_steps": self.inner_steps,
            "k": self.k, "steps": list(self.steps),
            "member_accuracy": self.member_accuracy,
            "member_loss": self.member_loss}


@functools.partial(jax.jit, static_argnames=(
    "apply_fn", "step_aware", "batching", "objective", "body_head", "inner"))
def _chunk_outputs(apply_fn, params, inner_lrs, tasks, *, step_aware,
                   batching, objective, body_head, inner):
  run = inner.make(apply_fn, params, inner_lrs, body_head=body_head,
                   first_order=True, step_aware=step_aware,
                   objective=objective, query_every_step=False)
  last = jnp.int32(core.validate_inner_lrs(params, inner_lrs) - 1)

  def outputs(task: Task) -> Array:
    adapted, _ = run(task)
    if step_aware:
      return apply_fn(adapted, task.query_x, last)
    return apply_fn(adapted, task.query_x)
  if batching == "map":
    return jax.lax.map(outputs, tasks)
  return jax.vmap(outputs)(tasks)


def query_outputs(apply_fn: ApplyFn,
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
                  inner: Optional[rules.InnerUpdate] = None) -> np.ndarray:
  """One member's query outputs after adapting to every task.

  Args: as :func:`metalearn.evaluate.evaluate`.

  Returns:
    float32 [num_tasks, Q, ...]: the model's outputs (logits [.., n_way]
    for classification) on each task's query set after the last of
    ``inner_steps`` inner steps, computed as the evaluation computes its
    query metrics.
  """
  batching = evaluate_lib.check_options(inner_steps, batching)
  lrs = inner_lrs_lib.extend_inner_lrs(inner_lrs, inner_steps)
  out = []
  for part, n in evaluate_lib.task_chunks(tasks, chunk_size):
    out.append(np.asarray(_chunk_outputs(
        apply_fn, params, lrs, part, step_aware=step_aware,
        batching=batching, objective=objective, body_head=body_head,
        inner=inner or rules.sgd()), np.float32)[:n])
  return np.concatenate(out)


@functools.partial(jax.jit, static_argnames=("objective", "average"))
def _scores(outputs: Array, targets: Array, *, objective: Objective,
            average: bool):
  """Per-task (loss [T], metric [T] or None) of outputs [T, Q, ...], or of
  the members' mean prediction from outputs [K, T, Q, ...] (``average``)."""
  if average and objective.integer_targets:  # log of the mean probability.
    outputs = jax.nn.logsumexp(jax.nn.log_softmax(outputs, axis=-1),
                               axis=0) - jnp.log(outputs.shape[0])
  elif average:
    outputs = jnp.mean(outputs, axis=0)
  loss = jax.vmap(objective.loss)(outputs, targets)
  metric = (None if objective.metric is None
            else jax.vmap(objective.metric)(outputs, targets))
  return loss, metric


def combine(outputs: Sequence[np.ndarray], targets: Array,
            objective: Objective = CLASSIFICATION
           ) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """The ensemble's per-task loss and metric from its members' outputs.

  Args:
    outputs: k arrays [T, Q, ...], each member's query outputs
      (:func:`query_outputs`).
    targets: [T, Q, ...] the query targets.
    objective: with integer targets, the members' softmax probabilities
      are averaged and scored as log-probabilities (the metric is the
      accuracy of their argmax, the loss their cross-entropy); otherwise
      the outputs are averaged.

  Returns:
    ``(loss [T], metric [T] or None)``.
  """
  if len(outputs) == 0:
    raise ValueError("an ensemble needs at least one member.")
  loss, metric = _scores(jnp.asarray(np.stack(outputs)), jnp.asarray(targets),
                         objective=objective, average=True)
  return np.asarray(loss), None if metric is None else np.asarray(metric)


def evaluate_ensemble(apply_fn: ApplyFn,
                      members: Sequence[MetaParams],
                      tasks: Task,
                      *,
                      inner_steps: int,
                      steps: Sequence[int] = (),
                      objective: Objective = CLASSIFICATION,
                      **options) -> EnsembleResult:
  """Adapts every member to every task and scores their mean prediction.

  Args:
    apply_fn: the model's apply function (all members share the model).
    members: k >= 1 meta-parameters (``params``, ``inner_lrs``), e.g. the
      top-k checkpoints' (:meth:`metalearn.checkpoints.Checkpointer.
      restore_best_k`).
    tasks: task set with a leading [num_tasks] axis.
    inner_steps: inner steps at test time, >= 1.
    steps: the members' meta-steps, reported as they are.
    objective: as in :func:`combine`.
    **options: ``step_aware``, ``chunk_size``, ``batching``, ``body_head``,
      ``inner``, as in :func:`metalearn.evaluate.evaluate`.

  Returns:
    An :class:`EnsembleResult`.
  """
  if not members:
    raise ValueError("an ensemble needs at least one member.")
  outputs = [query_outputs(apply_fn, m.params, m.inner_lrs, tasks,
                           inner_steps=inner_steps, objective=objective,
                           **options) for m in members]
  targets = jnp.asarray(tasks.query_y)
  loss, metric = combine(outputs, targets, objective)
  alone = [_scores(jnp.asarray(o), targets, objective=objective,
                   average=False) for o in outputs]
  member_accuracy = None
  if metric is not None:
    member_accuracy = [float(jnp.mean(a)) for _, a in alone]
  return EnsembleResult(
      accuracy=None if metric is None else float(np.mean(metric)),
      ci95=None if metric is None else evaluate_lib.ci95(metric),
      std=None if metric is None else float(np.std(metric)),
      loss=float(np.mean(loss)), loss_ci95=evaluate_lib.ci95(loss),
      task_accuracy=metric, task_loss=loss, member_accuracy=member_accuracy,
      member_loss=[float(jnp.mean(l)) for l, _ in alone], k=len(members),
      num_tasks=int(tasks.query_y.shape[0]), inner_steps=inner_steps,
      steps=tuple(int(s) for s in steps))


def format_line(result: EnsembleResult, title: str = "ensemble") -> str:
  """One line: the ensemble's accuracy (or loss), its CI and its members."""
  members = f"{result.k} checkpoints" + (
      f", steps {', '.join(map(str, result.steps))}" if result.steps else "")
  if result.accuracy is None:
    return (f"{title}: query loss {result.loss:.4f} ± {result.loss_ci95:.4f} "
            f"(95% CI, {result.num_tasks} tasks, {members})")
  return (f"{title}: {100 * result.accuracy:.2f}% ± {100 * result.ci95:.2f} "
          f"(95% CI, {result.num_tasks} tasks, std {100 * result.std:.2f}, "
          f"{members})")
