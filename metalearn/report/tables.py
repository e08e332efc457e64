"""Pure numbers and text: ratios against a reference, a recommendation from
the measured numbers, the console and markdown tables (``report.md`` and
``report.html`` are put together in :mod:`metalearn.report.document`).

Nothing here trains, measures, writes files or draws; records come from
:mod:`metalearn.compare` (or ``results.json``) as :class:`AlgorithmResult`
or plain dicts.
"""

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

from metalearn.report import text
from metalearn.report import writeup
from metalearn.report.records import AlgorithmResult
from metalearn.report.records import as_result
from metalearn.report.records import finite
from metalearn.report.records import label
from metalearn.report.records import summary


class Ratio(NamedTuple):
  """One algorithm against the reference (``None`` where not measured).

  Attributes:
    name: the algorithm.
    speedup: its tasks/s over the reference's.
    xla_memory_ratio: its XLA scratch bytes over the reference's.
    peak_memory_ratio: its runtime peak over the reference's (only when both
      ran in their own process: a shared process's peak is cumulative).
    accuracy_diff: its test accuracy minus the reference's.
    accuracy_diff_ci95: 95% CI half-width of that difference, paired over
      the same test tasks (1.96 std(per-task difference) / sqrt(n)).
  """
  name: str
  speedup: Optional[float]
  xla_memory_ratio: Optional[float]
  peak_memory_ratio: Optional[float]
  accuracy_diff: Optional[float]
  accuracy_diff_ci95: Optional[float]


def _ratio(a, b) -> Optional[float]:
  return a / b if finite(a) and finite(b) and b > 0 else None


def paired_ci95(a: Optional[Sequence[float]],
                b: Optional[Sequence[float]]) -> Optional[float]:
  """95% CI half-width of ``mean(a - b)`` over paired tasks, else None."""
  if a is None or b is None or len(a) != len(b) or len(a) < 2:
    return None
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  return float(1.96 * np.std(d) / math.sqrt(len(d)))


def ratios(results: Sequence, reference: str = "maml") -> list[Ratio]:
  """Every algorithm against ``reference`` (the first record if absent)."""
  results = [as_result(r) for r in results]
  if not results:
    return []
  base = next((r for r in results if r.name == reference), results[0])
  out = []
  for r in results:
    diff = diff_ci = None
    if finite(r.test_accuracy) and finite(base.test_accuracy):
      diff = r.test_accuracy - base.test_accuracy
      diff_ci = paired_ci95(r.test_task_accuracy, base.test_task_accuracy)
    isolated = bool(r.peak_memory_isolated and base.peak_memory_isolated)
    peak = (_ratio(r.peak_memory_bytes, base.peak_memory_bytes)
            if isolated else None)
    out.append(Ratio(r.name, _ratio(r.tasks_per_s, base.tasks_per_s),
                     _ratio(r.xla_temp_bytes, base.xla_temp_bytes), peak,
                     diff, diff_ci))
  return out


def _memory_key(results: Sequence[AlgorithmResult]) -> Optional[str]:
  """The memory figure every record has: XLA scratch, else an own-process
  runtime peak (a shared process's peak says little about one algorithm)."""
  if all(finite(r.xla_temp_bytes) for r in results):
    return "xla_temp_bytes"
  if all(finite(r.peak_memory_bytes) and r.peak_memory_isolated
         for r in results):
    return "peak_memory_bytes"
  return None


def _acc(r: AlgorithmResult) -> str:
  return text.pct(r.test_accuracy, r.test_ci95 if finite(r.test_ci95)
                  else 0.0)


def _clear_winner(best: AlgorithmResult,
                  valid: Sequence[AlgorithmResult]) -> list[str]:
  """Why ``best`` wins on accuracy alone."""
  reasons = [f"{best.name} has the highest test accuracy, {_acc(best)} "
             "(95% CI), and its interval does not overlap any other "
             "algorithm's."]
  rest = sorted((r for r in valid if r is not best),
                key=lambda r: -r.test_accuracy)
  if rest:
    reasons.append(f"Runner-up: {rest[0].name} at {_acc(rest[0])}.")
  fastest = max(valid, key=lambda r: r.tasks_per_s or 0.0)
  if (fastest is not best and finite(best.tasks_per_s)
      and finite(fastest.tasks_per_s)):
    reasons.append(
        f"It is {fastest.tasks_per_s / best.tasks_per_s:.2f}x slower than "
        f"the fastest ({fastest.name}); accuracy decides because the gap is "
        "larger than the uncertainty.")
  return reasons


def _by_cost(tied: Sequence[AlgorithmResult],
             speed_tolerance: float) -> tuple[str, list[str]]:
  """Among algorithms tied on accuracy: the fastest, then the leanest."""
  timed = [r for r in tied if finite(r.tasks_per_s)]
  if not timed:
    best = max(tied, key=lambda r: r.test_accuracy)
    return best.name, ["No throughput was measured; the most accurate is "
                       "kept."]
  fastest = max(timed, key=lambda r: r.tasks_per_s)
  near = [r for r in timed
          if r.tasks_per_s >= (1 - speed_tolerance) * fastest.tasks_per_s]
  key = _memory_key(near) if len(near) > 1 else None
  if key is None:
    return fastest.name, [
        f"{fastest.name} is the fastest of them at {fastest.tasks_per_s:.1f} "
        "tasks/s (compile time excluded)" + "".join(
            f", {fastest.tasks_per_s / r.tasks_per_s:.2f}x {r.name}"
            for r in timed if r is not fastest) + "."]
  leanest = min(near, key=lambda r: getattr(r, key))
  what = ("XLA scratch per meta-step" if key == "xla_temp_bytes"
          else "runtime peak memory")
  return leanest.name, [
      f"{', '.join(r.name for r in near)} are within "
      f"{100 * speed_tolerance:.0f}% of the fastest throughput "
      f"({fastest.tasks_per_s:.1f} tasks/s); {leanest.name} needs the least "
      f"memory ({what}: " + ", ".join(
          f"{r.name} {text.mib(getattr(r, key))}" for r in near) + ")."]


def recommend(results: Sequence, *, speed_tolerance: float = 0.1
             ) -> tuple[Optional[str], list[str]]:
  """Picks an algorithm from measured numbers and says why.

  The most accurate algorithm wins outright when its 95% CI does not
  overlap any other algorithm's. Otherwise every algorithm whose CI overlaps
  the best one's is tied on accuracy, and cost decides among them: the
  fastest (steady-state tasks/s; compile time is not counted) wins;
  algorithms within ``speed_tolerance`` of the fastest count as equally
  fast, and the leanest of them (XLA scratch memory, else an own-process
  runtime peak) wins.

  Args:
    results: :class:`AlgorithmResult` records or dicts; failed ones (no test
      accuracy) are skipped.
    speed_tolerance: relative throughput difference treated as a tie.

  Returns:
    ``(name, reasons)``; ``(None, [why])`` when nothing finished.
  """
  valid = [r for r in map(as_result, results) if finite(r.test_accuracy)]
  if not valid:
    return None, ["No algorithm finished with a test accuracy."]
  ci = {r.name: r.test_ci95 if finite(r.test_ci95) else 0.0 for r in valid}
  best = max(valid, key=lambda r: r.test_accuracy)
  tied = [r for r in valid if r is best or best.test_accuracy -
          r.test_accuracy <= ci[best.name] + ci[r.name]]
  if len(tied) == 1:
    return best.name, _clear_winner(best, valid)
  names = ", ".join(f"{r.name} ({_acc(r)})" for r in tied)
  name, reasons = _by_cost(tied, speed_tolerance)
  return name, [f"Accuracy does not separate {names}: each 95% CI overlaps "
                f"the best's ({best.name}), so cost decides among them."
               ] + reasons


def table_rows(results: Sequence) -> tuple[list[str], list[list[str]]]:
  """Header and cells of the per-algorithm table (shared by both formats).

  Compile time and training time are separate columns; an algorithm that
  failed gets one row with its error.
  """
  head = ["algorithm", "compile s", "train s", "tasks/s", "peak MiB",
          "XLA scratch MiB", "final train loss", "test acc ± 95% CI",
          "std", "acc - chance"]
  rows = []
  for r in map(as_result, results):
    if r.error:
      rows.append([r.name, f"error: {r.error}"] + [""] * (len(head) - 2))
      continue
    peak = r.peak_memory_bytes / 2**20 if finite(r.peak_memory_bytes) else None
    xla = r.xla_temp_bytes / 2**20 if finite(r.xla_temp_bytes) else None
    rows.append([
        r.name, _compile(r), text.num(r.train_s, ".1f"),
        text.num(r.tasks_per_s, ".1f"), text.num(peak, ".0f"),
        text.num(xla), text.num(r.final_train_loss, ".3f"),
        text.pct(r.test_accuracy, r.test_ci95), text.pct(r.test_std),
        text.pct(r.improvement_over_chance)])
  return head, rows


def _compile(r) -> str:
  """Compile seconds waited for, and those spent in the background."""
  waited = text.num(r.compile_s, ".1f")
  if finite(r.compile_ahead_s) and r.compile_ahead_s >= 0.05:
    return f"{waited} (+{r.compile_ahead_s:.1f} while training)"
  return waited


def console_table(results: Sequence) -> str:
  """The per-algorithm numbers as a fixed-width text table."""
  return text.text_table(*table_rows(results))


def _times(x: Optional[float]) -> str:
  return f"{x:.2f}x" if finite(x) else text.NA


def _memory(x: Optional[float]) -> str:
  if not finite(x):
    return text.NA
  change = round(100 * (1 - x))
  return f"{x:.2f}x (" + (f"{change}% less" if change > 0 else
                          f"{-change}% more" if change < 0 else "same") + ")"


def _ratio_cells(r: Ratio, reference: str) -> list[str]:
  if r.name == reference:
    return [r.name, "1.00x", "1.00x",
            "1.00x" if finite(r.peak_memory_ratio) else text.NA, "reference"]
  diff = text.NA if not finite(r.accuracy_diff) else (
      f"{100 * r.accuracy_diff:+.1f} pp" + (
          f" ± {100 * r.accuracy_diff_ci95:.1f}"
          if finite(r.accuracy_diff_ci95) else ""))
  return [r.name, _times(r.speedup), _memory(r.xla_memory_ratio),
          _memory(r.peak_memory_ratio), diff]


def ratio_rows(rows: Sequence[Ratio],
               reference: str) -> tuple[list[str], list[list[str]]]:
  """Header and cells of :func:`ratio_table`."""
  head = ["algorithm", f"speed-up vs {reference}",
          f"XLA scratch vs {reference}",
          f"peak memory vs {reference} (own process)",
          f"accuracy vs {reference} (paired 95% CI)"]
  return head, [_ratio_cells(r, reference) for r in rows]


def ratio_table(rows: Sequence[Ratio], reference: str, *,
                markdown: bool = False) -> str:
  """:func:`ratios` as a table: speed-up, memory and accuracy vs reference."""
  return text.table(*ratio_rows(rows, reference), markdown=markdown)


def step_loss_rows(results: Sequence) -> tuple[list[str], list[list[str]]]:
  """Header and cells of :func:`step_loss_table` (no rows if none).

  Records with ``test_adaptation_loss`` also show step 0, the loss before
  any inner step (``n/a`` for records that lack it).
  """
  results = [r for r in map(as_result, results) if r.test_step_loss]
  if not results:
    return [], []
  before = any(r.test_adaptation_loss for r in results)
  steps = max(len(r.test_step_loss) for r in results)
  head = (["algorithm"] + ["before (step 0)"] * before +
          [f"step {i}" for i in range(1, steps + 1)])
  cells = [[r.name] + ([text.num(r.test_adaptation_loss[0], ".3f")
                        if r.test_adaptation_loss else text.NA] * before) +
           [f"{x:.3f}" for x in r.test_step_loss] +
           [""] * (steps - len(r.test_step_loss)) for r in results]
  return head, cells


def step_loss_table(results: Sequence, *, markdown: bool = True) -> str:
  """Query loss after each inner step, mean over test tasks ("" if none)."""
  head, cells = step_loss_rows(results)
  return text.table(head, cells, markdown=markdown) if cells else ""


def explanations(results: Sequence) -> list[str]:
  """``name (label): summary``, one line per algorithm, from the table."""
  names = [as_result(r).name for r in results]
  return [f"{n} ({label(n)}): {summary(n)}" for n in names]


def reference_of(results: Sequence[AlgorithmResult], reference: str) -> str:
  """``reference`` if it ran, else the first record's name."""
  return next((r.name for r in results if r.name == reference),
              results[0].name if results else reference)


def console_report(results: Sequence, *, reference: str = "maml") -> str:
  """Everything the console shows after a comparison, as one string.

  The per-algorithm table, ours vs the write-up, the ratios against
  ``reference``, the per-step test loss and the recommendation.
  """
  results = [as_result(r) for r in results]
  name, reasons = recommend(results)
  base = reference_of(results, reference)
  parts = ["Algorithms:"] + [f"  {line}" for line in explanations(results)]
  parts += ["", console_table(results), "",
            "Ours vs the write-up (the write-up's own GPU and protocol):",
            writeup.writeup_table(results), ""]
  if results:
    parts += [ratio_table(ratios(results, base), base), ""]
  steps = step_loss_table(results, markdown=False)
  if steps:
    parts += ["Query loss after each inner step (test tasks):", steps, ""]
  parts += [f"Recommendation: {name or 'none'}"]
  parts += [f"  - {r}" for r in reasons]
  return "\n".join(parts)
