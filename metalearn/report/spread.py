"""Spread and cost: the per-task test accuracies of every algorithm, and the
trade-off of accuracy against training time and memory, ours beside the
write-up's published points.

As in :mod:`metalearn.report.curves`: ``*_data`` (pure), ``draw_*`` (a
figure of exactly that data), ``plot_*`` (both, then the PNG).
"""

from typing import NamedTuple, Optional, Sequence

import numpy as np

from metalearn.report import figures
from metalearn.report import writeup
from metalearn.report.records import as_result
from metalearn.report.records import finite
from metalearn.report.records import label


class TaskAccuracy(NamedTuple):
  """One algorithm's test accuracies, task by task.

  Attributes:
    name: the algorithm.
    values: [test_tasks] accuracy of each test task (``test_task_accuracy``).
    mean, std, ci95: over those tasks (the CI is 1.96 std / sqrt(n)).
  """
  name: str
  values: np.ndarray
  mean: float
  std: float
  ci95: float


def task_accuracy_data(results: Sequence) -> list[TaskAccuracy]:
  """Every record with per-task test accuracies, in order."""
  out = []
  for r in map(as_result, results):
    if r.test_task_accuracy:
      v = np.asarray(r.test_task_accuracy, np.float64)
      mean, ci = figures.mean_ci95(v)
      out.append(TaskAccuracy(r.name, v, float(mean), float(v.std()),
                              float(ci)))
  return out


def jitter(n: int, width: float = 0.28) -> np.ndarray:
  """[n] fixed horizontal offsets in ``[-width, width]`` for a strip of
  points (seeded: the same picture every time)."""
  return np.random.default_rng(0).uniform(-width, width, n)


def draw_task_accuracy(data: Sequence[TaskAccuracy]):
  """A violin per algorithm with every task as a point, the mean ± 95% CI
  as a bar, and the std written beside it."""
  color = figures.colors([d.name for d in data])
  fig = figures.figure((max(5.0, 1.0 + 2.0 * len(data)), 4.6))
  ax = fig.add_subplot()
  if not data:
    figures.note(ax, "no per-task test accuracies")
    return fig
  pos = np.arange(len(data), dtype=np.float64)
  parts = ax.violinplot([d.values for d in data], positions=pos, widths=0.8,
                        showextrema=False)
  for body, d in zip(parts["bodies"], data):
    body.set_facecolor(color[d.name])
    body.set_alpha(0.25)
  for p, d in zip(pos, data):
    ax.scatter(p + jitter(len(d.values)), d.values, s=6, alpha=0.45,
               color=color[d.name], linewidths=0)
    ax.errorbar([p], [d.mean], yerr=[d.ci95], color="black", marker="D",
                markersize=5, capsize=6, linewidth=1.5)
    ax.annotate(f"mean {100 * d.mean:.1f}%\nstd {100 * d.std:.1f}",
                (p + 0.42, d.mean), fontsize=8, va="center", ha="left")
  ax.set_xticks(pos, [label(d.name) for d in data])
  ax.set_xlim(-0.6, len(data) - 0.4 + 0.45)
  ax.set_ylabel("test query accuracy of one task")
  n = {len(d.values) for d in data}
  ax.set_title(f"Accuracy per test task ({'/'.join(map(str, sorted(n)))} "
               "tasks, the same for every algorithm); black: mean ± 95% CI",
               fontsize=10)
  figures.finish(ax, legend=False)
  return fig


def plot_task_accuracy(results: Sequence, path: str) -> str:
  """Writes the per-task distribution to ``path``; returns ``path``."""
  return figures.save(draw_task_accuracy(task_accuracy_data(results)), path)


class Point(NamedTuple):
  """One algorithm on the trade-off picture.

  Attributes:
    name: the algorithm.
    source: ``ours`` or ``write-up`` (its own GPU and protocol).
    accuracy, ci95: test accuracy and its 95% CI half-width (0 if unknown).
    train_s: training time, seconds (compilation excluded for ours).
    memory_bytes: see :class:`TradeoffData` ``memory_kind``; None if not
      measured.
  """
  name: str
  source: str
  accuracy: float
  ci95: float
  train_s: Optional[float]
  memory_bytes: Optional[float]


class TradeoffData(NamedTuple):
  """What the trade-off picture draws.

  Attributes:
    points: ours (every finished record), then the write-up's published
      runs.
    estimates: ``(name, low, high)`` accuracies the write-up estimated
      without running (no time or memory: drawn as bands).
    memory_kind: what our ``memory_bytes`` is: ``own-process peak`` when
      every algorithm had its process to itself, else ``XLA scratch of one
      meta-step`` (a shared process's peak is cumulative).
  """
  points: list
  estimates: list
  memory_kind: str


def tradeoff_data(results: Sequence) -> TradeoffData:
  """Our finished records and the write-up's published figures."""
  done = [r for r in map(as_result, results) if finite(r.test_accuracy)]
  isolated = bool(done) and all(
      r.peak_memory_isolated and finite(r.peak_memory_bytes) for r in done)
  kind = "own-process peak" if isolated else "XLA scratch of one meta-step"
  points = [Point(r.name, "ours", r.test_accuracy,
                  r.test_ci95 if finite(r.test_ci95) else 0.0,
                  r.train_s if finite(r.train_s) else None,
                  (r.peak_memory_bytes if isolated else r.xla_temp_bytes)
                  if finite(r.peak_memory_bytes if isolated
                            else r.xla_temp_bytes) else None)
            for r in done]
  estimates = []
  for name, p in writeup.WRITEUP_RESULTS.items():
    if p.test_accuracy is not None:
      points.append(Point(name, "write-up", p.test_accuracy, 0.0, p.train_s,
                          None if p.peak_memory_gb is None
                          else p.peak_memory_gb * 1e9))
    elif p.estimate:
      estimates.append((name, *p.estimate))
  return TradeoffData(points, estimates, kind)


def draw_tradeoff(data: TradeoffData):
  """Test accuracy ± 95% CI against training time (left) and memory
  (right), log-scaled; filled circles ours, hollow squares the write-up's."""
  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker
  color = figures.colors([p.name for p in data.points] +
                         [e[0] for e in data.estimates])
  fig = figures.figure((11, 4.6))
  axes = fig.subplots(1, 2, sharey=True)
  for ax, field, xlabel in (
      (axes[0], "train_s", "training time, s (log; compilation excluded)"),
      (axes[1], "memory_bytes",
       f"memory, MB (log). Ours: {data.memory_kind}; write-up: its peak")):
    for p in data.points:
      x = getattr(p, field)
      if x is None:
        continue
      x = x / 1e6 if field == "memory_bytes" else x
      ours = p.source == "ours"
      ax.errorbar([x], [p.accuracy], yerr=[p.ci95], color=color[p.name],
                  marker="o" if ours else "s", markersize=8, capsize=4,
                  markerfacecolor=color[p.name] if ours else "white",
                  markeredgewidth=1.5, linestyle="none",
                  label=f"{label(p.name)} ({'ours' if ours else 'write-up'})")
      ax.annotate(label(p.name) + ("" if ours else "\n(write-up)"), (x,
                  p.accuracy), textcoords="offset points", xytext=(7, 4),
                  fontsize=7)
    for name, low, high in data.estimates:
      ax.axhspan(low, high, color=color[name], alpha=0.12,
                 label=f"{label(name)}: write-up's estimate, never run")
      ax.text(0.99, low, f"{label(name)}: write-up's estimate, never run ",
              transform=ax.get_yaxis_transform(), ha="right", va="bottom",
              fontsize=7, color="0.3")
    if ax.has_data():
      ax.set_xscale("log")
      ax.margins(x=0.25)
      ax.xaxis.set_major_formatter(ticker.FuncFormatter(
          lambda v, _: f"{v:g}"))
      ax.xaxis.set_minor_formatter(ticker.NullFormatter())
      ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.set_xlabel(xlabel, fontsize=9)
    figures.finish(ax, legend=False)
  axes[0].set_ylabel("test accuracy ± 95% CI")
  axes[0].set_title("Accuracy against training time", fontsize=10)
  axes[1].set_title("Accuracy against memory", fontsize=10)
  handles, labels = axes[0].get_legend_handles_labels()
  if handles:
    fig.legend(handles, labels, loc="outside lower center", ncol=3,
               fontsize=8)
  fig.suptitle("Trade-off: ours (filled, this machine and protocol) beside "
               "the write-up's published runs (hollow, its own GPU and "
               "protocol)", fontsize=10)
  return fig


def plot_tradeoff(results: Sequence, path: str) -> str:
  """Writes the trade-off picture to ``path``; returns ``path``."""
  return figures.save(draw_tradeoff(tradeoff_data(results)), path)
