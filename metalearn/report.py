"""The pure pieces of an algorithm comparison: records, ratios, a
recommendation computed from the measured numbers, markdown, plots.

Nothing here trains or measures; :mod:`metalearn.compare` does that and
hands over one :class:`AlgorithmResult` per algorithm. Records may also be
plain dicts (as read back from ``results.json``).
"""

import math
import numbers
import os
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top,g-bad-import-order


class AlgorithmResult(NamedTuple):
  """Everything measured for one algorithm (JSON-friendly: lists, numbers).

  Attributes:
    name: e.g. ``maml``, ``fomaml``, ``mamlpp``, ``mamlpp_first_order``.
    first_order, plus_plus: the two flags that define it.
    compile_s: compiling the meta-step, seconds.
    train_s: the meta-steps after compilation, seconds (steady state).
    iterations: meta-steps.
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
      last pass of training (at most the last ``iterations`` steps).
    train_loss: [iterations] query loss after the last inner step.
    train_meta_loss: [iterations] the optimised (weighted) meta-loss.
    test_accuracy, test_ci95, test_std: over the test tasks, after the last
      inner step (95% CI half-width, std across tasks).
    chance: 1 / n_way.
    improvement_over_chance: ``test_accuracy - chance``.
    test_step_loss: [inner_steps] query loss after each inner step, mean
      over test tasks.
    test_step_accuracy: [inner_steps] the same for accuracy.
    test_task_accuracy: [test_tasks] per task (for paired differences).
    inner_lrs: {layer path: [inner_steps]} final inner rates (mean over a
      leaf's elements), for algorithms that learn them; else None.
    wall_s: wall time of this algorithm, data set-up excluded.
    error: set when the algorithm failed; the numbers are then None.
  """
  name: str
  first_order: Optional[bool] = None
  plus_plus: Optional[bool] = None
  compile_s: Optional[float] = None
  train_s: Optional[float] = None
  iterations: Optional[int] = None
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
  test_accuracy: Optional[float] = None
  test_ci95: Optional[float] = None
  test_std: Optional[float] = None
  chance: Optional[float] = None
  improvement_over_chance: Optional[float] = None
  test_step_loss: Optional[list] = None
  test_step_accuracy: Optional[list] = None
  test_task_accuracy: Optional[list] = None
  inner_lrs: Optional[dict] = None
  wall_s: Optional[float] = None
  error: Optional[str] = None


def as_result(record: AlgorithmResult | Mapping[str, Any]) -> AlgorithmResult:
  """A record as :class:`AlgorithmResult` (unknown dict keys are dropped)."""
  if isinstance(record, AlgorithmResult):
    return record
  fields = AlgorithmResult._fields
  return AlgorithmResult(**{k: v for k, v in record.items() if k in fields})


def _ok(x) -> bool:
  return (isinstance(x, numbers.Real) and not isinstance(x, bool)
          and math.isfinite(x))


class Ratio(NamedTuple):
  """One algorithm against the baseline (``None`` where not measured).

  Attributes:
    name: the algorithm.
    speedup: its tasks/s over the baseline's.
    xla_memory_ratio: its XLA scratch bytes over the baseline's.
    peak_memory_ratio: its runtime peak over the baseline's (only when both
      ran in their own process: a shared process's peak is cumulative).
    accuracy_diff: its test accuracy minus the baseline's.
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
  return a / b if _ok(a) and _ok(b) and b > 0 else None


def ratios(results: Sequence, baseline: str = "maml") -> list[Ratio]:
  """Every algorithm against ``baseline`` (the first record if absent)."""
  results = [as_result(r) for r in results]
  if not results:
    return []
  base = next((r for r in results if r.name == baseline), results[0])
  out = []
  for r in results:
    diff = diff_ci = None
    if _ok(r.test_accuracy) and _ok(base.test_accuracy):
      diff = r.test_accuracy - base.test_accuracy
      a, b = r.test_task_accuracy, base.test_task_accuracy
      if a is not None and b is not None and len(a) == len(b) and len(a) > 1:
        d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        diff_ci = float(1.96 * np.std(d) / math.sqrt(len(d)))
    isolated = bool(r.peak_memory_isolated and base.peak_memory_isolated)
    out.append(Ratio(r.name, _ratio(r.tasks_per_s, base.tasks_per_s),
                     _ratio(r.xla_temp_bytes, base.xla_temp_bytes),
                     _ratio(r.peak_memory_bytes, base.peak_memory_bytes)
                     if isolated else None, diff, diff_ci))
  return out


def _pct(x: Optional[float], ci: Optional[float] = None) -> str:
  if not _ok(x):
    return "n/a"
  return f"{100 * x:.1f}%" + (f" ± {100 * ci:.1f}" if _ok(ci) else "")


def _memory_key(results: Sequence[AlgorithmResult]) -> Optional[str]:
  """The memory figure every record has: XLA scratch, else an own-process
  runtime peak (a shared process's peak says little about one algorithm)."""
  if all(_ok(r.xla_temp_bytes) for r in results):
    return "xla_temp_bytes"
  if all(_ok(r.peak_memory_bytes) and r.peak_memory_isolated
         for r in results):
    return "peak_memory_bytes"
  return None


def _mib(n) -> str:
  return f"{n / 2**20:.1f} MiB" if _ok(n) else "n/a"


def recommend(results: Sequence, *, speed_tolerance: float = 0.1
             ) -> tuple[Optional[str], list[str]]:
  """Picks an algorithm from measured numbers and says why.

  The rule: the most accurate algorithm wins outright when its 95% CI does
  not overlap any other algorithm's. Otherwise every algorithm whose CI
  overlaps the best one's is tied on accuracy, and among those the fastest
  (tasks/s) wins; algorithms within ``speed_tolerance`` of the fastest count
  as equally fast, and the leanest of them (XLA scratch memory, else runtime
  peak) wins.

  Args:
    results: :class:`AlgorithmResult` records or dicts; failed ones (no test
      accuracy) are skipped.
    speed_tolerance: relative throughput difference treated as a tie.

  Returns:
    ``(name, reasons)``; ``(None, [why])`` when nothing finished.
  """
  valid = [r for r in map(as_result, results) if _ok(r.test_accuracy)]
  if not valid:
    return None, ["No algorithm finished with a test accuracy."]
  ci = {r.name: r.test_ci95 if _ok(r.test_ci95) else 0.0 for r in valid}
  best = max(valid, key=lambda r: r.test_accuracy)
  tied = [r for r in valid if r is best or best.test_accuracy -
          r.test_accuracy <= ci[best.name] + ci[r.name]]
  acc = lambda r: _pct(r.test_accuracy, ci[r.name])  # noqa: E731
  if len(tied) == 1:
    reasons = [f"{best.name} has the highest test accuracy, {acc(best)} "
               "(95% CI), and its interval does not overlap any other "
               "algorithm's."]
    rest = sorted((r for r in valid if r is not best),
                  key=lambda r: -r.test_accuracy)
    if rest:
      reasons.append(f"Runner-up: {rest[0].name} at {acc(rest[0])}.")
    fastest = max(valid, key=lambda r: r.tasks_per_s or 0.0)
    if fastest is not best and _ok(best.tasks_per_s) and _ok(
        fastest.tasks_per_s):
      reasons.append(
          f"It is {fastest.tasks_per_s / best.tasks_per_s:.2f}x slower than "
          f"the fastest ({fastest.name}); accuracy decides because the gap is "
          "larger than the uncertainty.")
    return best.name, reasons
  names = ", ".join(f"{r.name} ({acc(r)})" for r in tied)
  reasons = [f"Accuracy does not separate {names}: each 95% CI overlaps the "
             f"best's ({best.name}), so cost decides among them."]
  timed = [r for r in tied if _ok(r.tasks_per_s)]
  if not timed:
    reasons.append("No throughput was measured; the most accurate is kept.")
    return best.name, reasons
  fastest = max(timed, key=lambda r: r.tasks_per_s)
  near = [r for r in timed
          if r.tasks_per_s >= (1 - speed_tolerance) * fastest.tasks_per_s]
  key = _memory_key(near) if len(near) > 1 else None
  if key is None:
    reasons.append(f"{fastest.name} is the fastest of them at "
                   f"{fastest.tasks_per_s:.1f} tasks/s" + "".join(
                       f", {fastest.tasks_per_s / r.tasks_per_s:.2f}x "
                       f"{r.name}" for r in timed if r is not fastest) + ".")
    return fastest.name, reasons
  leanest = min(near, key=lambda r: getattr(r, key))
  label = "XLA scratch per meta-step" if key == "xla_temp_bytes" else (
      "runtime peak memory")
  reasons.append(
      f"{', '.join(r.name for r in near)} are within "
      f"{100 * speed_tolerance:.0f}% of the fastest throughput "
      f"({fastest.tasks_per_s:.1f} tasks/s); {leanest.name} needs the least "
      f"memory ({label}: " + ", ".join(
          f"{r.name} {_mib(getattr(r, key))}" for r in near) + ").")
  return leanest.name, reasons


def _f(x, fmt: str = ".2f") -> str:
  return format(x, fmt) if _ok(x) else "n/a"


def table_rows(results: Sequence) -> tuple[list[str], list[list[str]]]:
  """Header and cells of the per-algorithm table (shared by both formats)."""
  head = ["algorithm", "compile s", "train s", "tasks/s", "peak MiB",
          "XLA scratch MiB", "final train loss", "test acc ± 95% CI",
          "std", "acc - chance"]
  rows = []
  for r in map(as_result, results):
    if r.error:
      rows.append([r.name, f"error: {r.error}"] + [""] * (len(head) - 2))
      continue
    rows.append([
        r.name, _f(r.compile_s, ".1f"), _f(r.train_s, ".1f"),
        _f(r.tasks_per_s, ".1f"),
        _f(r.peak_memory_bytes / 2**20 if _ok(r.peak_memory_bytes) else None,
           ".0f"),
        _f(r.xla_temp_bytes / 2**20 if _ok(r.xla_temp_bytes) else None),
        _f(r.final_train_loss, ".3f"), _pct(r.test_accuracy, r.test_ci95),
        _pct(r.test_std), _pct(r.improvement_over_chance)])
  return head, rows


def _text(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """Fixed-width columns: first left-aligned, the rest right-aligned."""
  widths = [max(len(c) for c in col) for col in zip(head, *rows)]
  fmt = lambda cells: "  ".join(  # noqa: E731
      c.rjust(w) if i else c.ljust(w) for i, (c, w) in
      enumerate(zip(cells, widths))).rstrip()
  lines = [fmt(head), fmt(["-" * w for w in widths])]
  return "\n".join(lines + [fmt(r) for r in rows])


def _md(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def console_table(results: Sequence) -> str:
  """A fixed-width text table of the per-algorithm numbers."""
  return _text(*table_rows(results))


def _ratio_cells(r: Ratio, baseline: str) -> list[str]:
  def times(x):
    return f"{x:.2f}x" if _ok(x) else "n/a"

  def memory(x):
    if not _ok(x):
      return "n/a"
    change = round(100 * (1 - x))
    return f"{x:.2f}x (" + (f"{change}% less" if change > 0 else
                            f"{-change}% more" if change < 0 else "same") + ")"

  if r.name == baseline:
    return [r.name, "1.00x", "1.00x", "1.00x" if _ok(r.peak_memory_ratio)
            else "n/a", "baseline"]
  diff = "n/a" if not _ok(r.accuracy_diff) else (
      f"{100 * r.accuracy_diff:+.1f} pp" + (
          f" ± {100 * r.accuracy_diff_ci95:.1f}"
          if _ok(r.accuracy_diff_ci95) else ""))
  return [r.name, times(r.speedup), memory(r.xla_memory_ratio),
          memory(r.peak_memory_ratio), diff]


def ratio_table(rows: Sequence[Ratio], baseline: str, *,
                markdown: bool = False) -> str:
  head = ["algorithm", f"speed-up vs {baseline}",
          f"XLA scratch vs {baseline}",
          f"peak memory vs {baseline} (own process)",
          f"accuracy vs {baseline} (paired 95% CI)"]
  cells = [_ratio_cells(r, baseline) for r in rows]
  return (_md if markdown else _text)(head, cells)


def step_loss_table(results: Sequence, *, markdown: bool = True) -> str:
  """Query loss after each inner step, mean over test tasks."""
  results = [r for r in map(as_result, results) if r.test_step_loss]
  if not results:
    return ""
  steps = max(len(r.test_step_loss) for r in results)
  head = ["algorithm"] + [f"step {i}" for i in range(1, steps + 1)]
  cells = [[r.name] + [f"{x:.3f}" for x in r.test_step_loss] +
           [""] * (steps - len(r.test_step_loss)) for r in results]
  return (_md if markdown else _text)(head, cells)


def render_markdown(results: Sequence, *, title: str,
                    header: Sequence[str] = (), baseline: str = "maml",
                    plots: Sequence[str] = (),
                    notes: Sequence[str] = ()) -> str:
  """The whole ``report.md``: setting, tables, ratios, recommendation."""
  results = [as_result(r) for r in results]
  name, reasons = recommend(results)
  ratio_rows = ratios(results, baseline)
  parts = [f"# {title}", ""]
  parts += [f"- {line}" for line in header]
  head, rows = table_rows(results)
  parts += ["", "## Results", "", _md(head, rows), ""]
  if ratio_rows:
    base = next((r.name for r in results if r.name == baseline),
                results[0].name)
    parts += [f"## Against {base}", "",
              ratio_table(ratio_rows, base, markdown=True), ""]
  steps = step_loss_table(results)
  if steps:
    parts += ["## Adaptation: test query loss after each inner step", "",
              steps, ""]
  parts += ["## Recommendation", "",
            f"**{name}**" if name else "**none**", ""]
  parts += [f"- {r}" for r in reasons]
  if notes:
    parts += ["", "## Notes", ""] + [f"- {n}" for n in notes]
  if plots:
    parts += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
  return "\n".join(parts) + "\n"


def _smooth(y: np.ndarray) -> np.ndarray:
  window = max(1, len(y) // 20)
  if window == 1:
    return y
  kernel = np.ones(window) / window
  return np.convolve(np.pad(y, (window - 1, 0), mode="edge"), kernel,
                     mode="valid")


def _save(fig, path: str) -> str:
  """Lays out, writes the PNG and frees the figure."""
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_training_loss(results: Sequence, path: str) -> str:
  """Training query loss after the last inner step, per iteration."""
  fig, ax = plt.subplots(figsize=(7, 4))
  for r in map(as_result, results):
    if not r.train_loss:
      continue
    y = np.asarray(r.train_loss, np.float64)
    x = np.arange(1, len(y) + 1)
    (line,) = ax.plot(x, _smooth(y), label=r.name)
    ax.plot(x, y, color=line.get_color(), alpha=0.2, linewidth=0.8)
  ax.set_xlabel("meta-iteration")
  ax.set_ylabel("train query loss after last inner step")
  ax.set_title("Training loss (faint: raw, solid: moving average)")
  ax.grid(alpha=0.3)
  ax.legend()
  return _save(fig, path)


def plot_adaptation_loss(results: Sequence, path: str) -> str:
  """Test query loss after each inner step, mean over test tasks."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for r in map(as_result, results):
    if r.test_step_loss:
      steps = np.arange(1, len(r.test_step_loss) + 1)
      ax.plot(steps, r.test_step_loss, marker="o", label=r.name)
  ax.set_xlabel("inner step")
  ax.set_ylabel("test query loss (mean over tasks)")
  ax.set_title("Per-step adaptation on the test tasks")
  ax.xaxis.get_major_locator().set_params(integer=True)
  ax.grid(alpha=0.3)
  ax.legend()
  return _save(fig, path)


def plot_inner_lrs(result, path: str) -> str:
  """Heatmap of learned inner rates: layer (rows) x inner step (columns)."""
  r = as_result(result)
  if not r.inner_lrs:
    raise ValueError(f"{r.name} has no learned inner_lrs to plot.")
  names = list(r.inner_lrs)
  grid = np.asarray([r.inner_lrs[n] for n in names], np.float64)
  fig, ax = plt.subplots(figsize=(max(5.0, 2.2 + 0.9 * grid.shape[1]),
                                  1.4 + 0.32 * len(names)))
  im = ax.imshow(grid, aspect="auto", cmap="viridis")
  ax.set_xticks(range(grid.shape[1]), [str(i + 1) for i in
                                       range(grid.shape[1])])
  ax.set_yticks(range(len(names)), names, fontsize=8)
  ax.set_xlabel("inner step")
  ax.set_title(f"{r.name}: learned inner learning rates")
  if grid.size <= 200:
    mid = (np.nanmax(grid) + np.nanmin(grid)) / 2
    for (i, j), v in np.ndenumerate(grid):
      ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7,
              color="black" if v > mid else "white")
  fig.colorbar(im, ax=ax)
  return _save(fig, path)


def write_plots(results: Sequence, output_dir: str) -> list[str]:
  """Writes every plot into ``output_dir``; returns the file names."""
  results = [as_result(r) for r in results]
  names = [os.path.basename(plot_training_loss(
               results, os.path.join(output_dir, "training_loss.png"))),
           os.path.basename(plot_adaptation_loss(
               results, os.path.join(output_dir, "adaptation_loss.png")))]
  for r in results:
    if r.inner_lrs:
      names.append(os.path.basename(plot_inner_lrs(
          r, os.path.join(output_dir, f"inner_lrs_{r.name}.png"))))
  return names
