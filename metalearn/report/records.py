"""The record of one algorithm's run, as :mod:`metalearn.compare` hands it
over (or as read back from ``results.json``)."""

import math
import numbers
from typing import Any, Mapping, NamedTuple, Optional

import numpy as np

from metalearn import algorithms

# Keys that older ``results.json`` files used -> today's field names.
_RENAMED = {"iterations": "meta_steps"}


class AlgorithmResult(NamedTuple):
  """Everything measured for one algorithm (JSON-friendly: lists, numbers).

  Attributes:
    name: a key of :data:`metalearn.algorithms.ALGORITHMS`, e.g. ``maml``.
    first_order, plus_plus: the two flags that define it.
    compile_s: compiling the meta-step, seconds (not part of ``train_s``):
      the time training waited for it.
    compile_ahead_s: compiling later phases' meta-steps in the background
      while the run went on, seconds (part of the wall time of ``train_s``
      and validation, not of ``compile_s``).
    train_s: the meta-steps after compilation, seconds (steady state).
    test_s: testing on the test tasks, seconds (its compiling included).
    meta_steps: meta-steps (outer updates) trained.
    tasks_trained: tasks adapted during training.
    tasks_per_s: training throughput, ``tasks_trained / train_s``.
    peak_memory_bytes: runtime peak (see ``peak_memory_source``).
    peak_memory_source: what that peak is, e.g. ``device peak_bytes_in_use``
      or ``process peak RSS`` and whether the process was shared.
    peak_memory_delta_bytes: growth of that peak during this algorithm
      (0 when an earlier algorithm in the same process peaked higher).
    peak_memory_isolated: whether the algorithm had its process to itself,
      so that the peak is its own (ratios of peaks need this).
    xla_temp_bytes: XLA's scratch for one compiled meta-step (exact, does
      not depend on what ran before).
    final_train_loss: mean query loss after the last inner step over the
      last epoch of training.
    train_loss: [calls] query loss after the last inner step, mean over
      the meta-steps of one compiled call (one ``metrics.jsonl`` row each).
    train_meta_loss: [calls] the optimised (weighted) meta-loss, likewise.
    train_step: [calls] the meta-step each of those rows ends at (the
      x-axis of ``train_loss``).
    val_step, val_accuracy, val_ci95: [validations] the meta-step, accuracy
      and 95% CI half-width of each validation during training (empty
      lists when the run did not validate).
    test_accuracy, test_ci95, test_std: over the test tasks, after the last
      inner step (95% CI half-width, std across tasks).
    chance: 1 / n_way.
    improvement_over_chance: ``test_accuracy - chance``.
    test_step_loss: [inner_steps] query loss after each inner step, mean
      over test tasks.
    test_step_accuracy: [inner_steps] the same for accuracy.
    test_task_accuracy: [test_tasks] per task (for paired differences).
    test_adaptation_loss, test_adaptation_accuracy: [inner_steps + 1] mean
      over test tasks of the query loss and accuracy at inner step 0
      (before adaptation) to the last step.
    test_adaptation_loss_ci95, test_adaptation_accuracy_ci95: [inner_steps
      + 1] their 95% CI half-widths over the test tasks.
    inner_lrs: {layer path: [inner_steps]} final inner rates (mean over a
      leaf's elements), for algorithms that learn them; else None.
    wall_s: wall time of this algorithm, data set-up excluded.
    error: set when the algorithm failed; the numbers are then None.
  """
  name: str
  first_order: Optional[bool] = None
  plus_plus: Optional[bool] = None
  compile_s: Optional[float] = None
  compile_ahead_s: Optional[float] = None
  train_s: Optional[float] = None
  test_s: Optional[float] = None
  meta_steps: Optional[int] = None
  tasks_trained: Optional[int] = None
  tasks_per_s: Optional[float] = None
  peak_memory_bytes: Optional[int] = None
  peak_memory_source: Optional[str] = None
  peak_memory_delta_bytes: Optional[int] = None
  peak_memory_isolated: Optional[bool] = None
  xla_temp_bytes: Optional[int] = None
  final_train_loss: Optional[float] = None
  train_loss: Optional[list] = None
  train_meta_loss: Optional[list] = None
  train_step: Optional[list] = None
  val_step: Optional[list] = None
  val_accuracy: Optional[list] = None
  val_ci95: Optional[list] = None
  test_accuracy: Optional[float] = None
  test_ci95: Optional[float] = None
  test_std: Optional[float] = None
  chance: Optional[float] = None
  improvement_over_chance: Optional[float] = None
  test_step_loss: Optional[list] = None
  test_step_accuracy: Optional[list] = None
  test_task_accuracy: Optional[list] = None
  test_adaptation_loss: Optional[list] = None
  test_adaptation_loss_ci95: Optional[list] = None
  test_adaptation_accuracy: Optional[list] = None
  test_adaptation_accuracy_ci95: Optional[list] = None
  inner_lrs: Optional[dict] = None
  wall_s: Optional[float] = None
  error: Optional[str] = None


def as_result(record: AlgorithmResult | Mapping[str, Any]) -> AlgorithmResult:
  """A record as :class:`AlgorithmResult`.

  Args:
    record: an :class:`AlgorithmResult`, or a dict such as one entry of
      ``results.json``'s ``algorithms``. Unknown keys are dropped; the old
      key ``iterations`` is read as ``meta_steps``.

  Returns:
    The record as an :class:`AlgorithmResult`.
  """
  if isinstance(record, AlgorithmResult):
    return record
  fields = AlgorithmResult._fields
  renamed = {_RENAMED.get(k, k): v for k, v in record.items()
             if k not in _RENAMED or _RENAMED[k] not in record}
  return AlgorithmResult(**{k: v for k, v in renamed.items() if k in fields})


def _curve(initial, per_step) -> tuple[list, list]:
  """Mean and 95% CI over tasks of ``[initial | per_step]``, as lists."""
  values = np.concatenate([np.asarray(initial, np.float64)[:, None],
                           np.asarray(per_step, np.float64)], axis=1)
  ci = 1.96 * values.std(axis=0) / math.sqrt(values.shape[0])
  return values.mean(axis=0).tolist(), ci.tolist()


def adaptation_curves(test) -> dict[str, Optional[list]]:
  """The ``test_adaptation_*`` fields of a record from a test evaluation.

  Args:
    test: a :class:`metalearn.evaluate.EvalResult` (read by attribute:
      ``task_initial_loss`` [n], ``task_step_loss`` [n, steps] and their
      accuracy counterparts).

  Returns:
    ``{field: [steps + 1] list}`` for the four ``test_adaptation_*`` fields,
    step 0 first; a field is None when ``test`` lacks what it needs.
  """
  out = dict.fromkeys(("test_adaptation_loss", "test_adaptation_loss_ci95",
                       "test_adaptation_accuracy",
                       "test_adaptation_accuracy_ci95"))
  for what, initial, steps in (
      ("loss", "task_initial_loss", "task_step_loss"),
      ("accuracy", "task_initial_accuracy", "task_step_accuracy")):
    initial, steps = getattr(test, initial, None), getattr(test, steps, None)
    if initial is not None and steps is not None:
      (out[f"test_adaptation_{what}"],
       out[f"test_adaptation_{what}_ci95"]) = _curve(initial, steps)
  return out


def finite(x: Any) -> bool:
  """Whether ``x`` is a finite real number (``bool`` and ``None`` are not)."""
  return (isinstance(x, numbers.Real) and not isinstance(x, bool)
          and math.isfinite(x))


def label(name: str) -> str:
  """The name a reader knows (``MAML++`` for ``mamlpp``), else ``name``."""
  alg = algorithms.ALGORITHMS.get(name)
  return alg.label if alg else name


def summary(name: str) -> str:
  """The algorithm table's one-line explanation of ``name``."""
  alg = algorithms.ALGORITHMS.get(name)
  return alg.summary if alg else "not in metalearn.algorithms.ALGORITHMS"
