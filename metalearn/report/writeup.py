"""Our numbers beside the PyTorch write-up's own published ones.

The write-up measured on its own GPU under its own protocol; nothing here
re-runs it. Accuracies compare roughly (same task, 5-way 1-shot Omniglot,
possibly other sizes); times and memory compare only as orders of magnitude
unless our run is the full-size protocol on a comparable GPU.
"""

from typing import NamedTuple, Optional, Sequence

from metalearn.report import text
from metalearn.report.records import as_result
from metalearn.report.records import finite
from metalearn.report.records import label

NOT_IN_WRITEUP = "not in the write-up"
NOT_RUN_HERE = "not run here"
CAPTION = ("The write-up's columns are its own published figures, measured "
           "on its own GPU under its own protocol, not re-run here. Ours are "
           "from this run (machine and protocol above). 'ours higher?' asks "
           "whether our 95% CI lies wholly above (yes) or below (no) the "
           "write-up's accuracy; time and memory only compare as orders of "
           "magnitude.")


class Published(NamedTuple):
  """One algorithm as the write-up published it.

  Attributes:
    test_accuracy: a fraction; ``None`` where it never ran.
    train_s: its training time, seconds.
    peak_memory_gb: its peak memory in GB (taken as 10^9 bytes).
    estimate: ``(low, high)`` accuracy it estimated without running.
  """
  test_accuracy: Optional[float] = None
  train_s: Optional[float] = None
  peak_memory_gb: Optional[float] = None
  estimate: Optional[tuple[float, float]] = None


# The PyTorch write-up's own published figures (its own GPU, its own
# protocol), keyed by our algorithm names. MAML++ it only estimated.
WRITEUP_RESULTS = {
    "maml": Published(test_accuracy=0.7416, train_s=364.6,
                      peak_memory_gb=1.34),
    "fomaml": Published(test_accuracy=0.7119, train_s=126.5,
                        peak_memory_gb=0.88),
    "mamlpp": Published(estimate=(0.77, 0.82)),
}


def higher(accuracy: Optional[float], ci95: Optional[float],
           theirs: Optional[Published]) -> str:
  """Whether our accuracy is above the write-up's, as the CI supports it.

  Args:
    accuracy: our test accuracy (fraction).
    ci95: its 95% CI half-width (0 when unknown).
    theirs: the write-up's row; ``None`` when it did not run the algorithm.

  Returns:
    ``yes`` / ``no`` when our interval lies wholly above / below the
    write-up's figure (or estimated range), else a short ``within ...``.
  """
  if theirs is None:
    return NOT_IN_WRITEUP
  if not finite(accuracy):
    return text.NA
  ci = ci95 if finite(ci95) else 0.0
  low, high = ((theirs.test_accuracy,) * 2 if theirs.estimate is None
               else theirs.estimate)
  if low is None:
    return text.NA
  if accuracy - ci > high:
    return "yes"
  if accuracy + ci < low:
    return "no"
  return ("within our CI" if theirs.estimate is None
          else "within its estimate")


def _theirs(p: Optional[Published]) -> list[str]:
  if p is None:
    return [NOT_IN_WRITEUP] * 3
  if p.test_accuracy is None:
    low, high = p.estimate or (None, None)
    est = (f"estimated {100 * low:.0f}–{100 * high:.0f}%, never run"
           if p.estimate else "never run")
    return [est, "never run", "never run"]
  # The published figure as published (two decimals), not rounded to ours.
  return [f"{100 * p.test_accuracy:.2f}%", text.num(p.train_s, ".1f"),
          f"{p.peak_memory_gb:.2f} GB" if finite(p.peak_memory_gb)
          else text.NA]


def _ours(r) -> list[str]:
  if r is None:
    return [NOT_RUN_HERE] * 4
  if r.error:
    return ["error"] + [""] * 3
  peak = text.NA
  if finite(r.peak_memory_bytes):
    peak = f"{r.peak_memory_bytes / 1e9:.2f} GB" + (
        "" if r.peak_memory_isolated else " (shared process)")
  return [text.pct(r.test_accuracy, r.test_ci95), text.num(r.train_s, ".1f"),
          text.num(r.compile_s, ".1f"), peak]


def writeup_rows(results: Sequence) -> tuple[list[str], list[list[str]]]:
  """Header and cells of "ours vs the write-up".

  One row per result, in order, then one per write-up algorithm we did not
  run. Compile time is its own column: the training time excludes it.
  """
  results = [as_result(r) for r in results]
  names = [r.name for r in results]
  names += [n for n in WRITEUP_RESULTS if n not in names]
  by_name = {r.name: r for r in results}
  head = ["algorithm", "test acc: ours ± 95% CI", "test acc: write-up",
          "ours higher?", "train s: ours", "compile s: ours",
          "train s: write-up", "peak memory: ours", "peak memory: write-up"]
  rows = []
  for name in names:
    r, p = by_name.get(name), WRITEUP_RESULTS.get(name)
    acc, train, compile_s, peak = _ours(r)
    their_acc, their_train, their_peak = _theirs(p)
    verdict = (NOT_RUN_HERE if r is None else "error" if r.error
               else higher(r.test_accuracy, r.test_ci95, p))
    rows.append([label(name), acc, their_acc, verdict, train, compile_s,
                 their_train, peak, their_peak])
  return head, rows


def writeup_table(results: Sequence, *, markdown: bool = False) -> str:
  """"Ours vs the write-up" as a text or markdown table."""
  return text.table(*writeup_rows(results), markdown=markdown)
