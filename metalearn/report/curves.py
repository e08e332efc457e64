"""Curves: training against true meta-steps, and adaptation on the test tasks
from inner step 0 with 95% CI bands.

Each picture is three functions: ``*_data(results)`` (pure: the numbers to
draw, checkable against ``results.json``), ``draw_*(data)`` (a matplotlib
figure of exactly those numbers) and ``plot_*(results, path)`` (both, then
the PNG).
"""

from typing import NamedTuple, Optional, Sequence

import numpy as np

from metalearn.report import figures
from metalearn.report.figures import Series
from metalearn.report.records import as_result
from metalearn.report.records import finite
from metalearn.report.records import label


class TrainingData(NamedTuple):
  """What the training picture draws.

  Attributes:
    raw: per algorithm, the query loss after the last inner step of every
      ``metrics.jsonl`` row (one per compiled call), x = the meta-step the
      row ends at.
    smooth: the same series' moving average.
    val: per algorithm, validation accuracy (``ci95`` set) at its
      meta-steps; only algorithms that validated.
    test: per algorithm, one point: the test accuracy and its CI at the
      last meta-step.
    meta_steps_known: False when a record had no ``train_step`` and its x
      values were spread evenly over ``meta_steps`` instead.
  """
  raw: list
  smooth: list
  val: list
  test: list
  meta_steps_known: bool = True


def _train_x(r) -> tuple[Optional[np.ndarray], bool]:
  """The meta-step of each train row; evenly spread when not recorded."""
  n = len(r.train_loss)
  if r.train_step and len(r.train_step) == n:
    return np.asarray(r.train_step, np.float64), True
  if finite(r.meta_steps):
    return r.meta_steps * np.arange(1, n + 1) / n, False
  return np.arange(1, n + 1, dtype=np.float64), False


def training_data(results: Sequence) -> TrainingData:
  """The numbers of the training picture (records without ``train_loss``
  are skipped)."""
  raw, smooth, val, test, known = [], [], [], [], True
  for r in map(as_result, results):
    if r.train_loss:
      x, exact = _train_x(r)
      known &= exact
      y = np.asarray(r.train_loss, np.float64)
      raw.append(Series(r.name, x, y))
      smooth.append(Series(r.name, x, figures.moving_average(y)))
    if r.val_step and r.val_accuracy:
      ci = r.val_ci95 or [0.0] * len(r.val_accuracy)
      val.append(Series(r.name, np.asarray(r.val_step, np.float64),
                        np.asarray(r.val_accuracy, np.float64),
                        np.asarray([c if finite(c) else 0.0 for c in ci])))
    if finite(r.test_accuracy) and finite(r.meta_steps):
      test.append(Series(r.name, np.asarray([r.meta_steps], np.float64),
                         np.asarray([r.test_accuracy]),
                         np.asarray([r.test_ci95 if finite(r.test_ci95)
                                     else 0.0])))
  return TrainingData(raw, smooth, val, test, known)


def draw_training(data: TrainingData):
  """Left: training loss (faint raw, solid moving average); right:
  validation accuracy ± 95% CI, and the final test accuracy."""
  names = [s.name for s in data.raw + data.val + data.test]
  color = figures.colors(names)
  fig = figures.figure((11, 4.2))
  loss_ax, acc_ax = fig.subplots(1, 2)
  for raw, smooth in zip(data.raw, data.smooth):
    c = color[raw.name]
    loss_ax.plot(raw.x, raw.y, color=c, alpha=0.35, linewidth=1,
                 marker=".", markersize=3)
    loss_ax.plot(smooth.x, smooth.y, color=c, linewidth=2,
                 label=label(raw.name))
  xlabel = "meta-step" if data.meta_steps_known else (
      "meta-step (rows spread evenly: steps not recorded)")
  loss_ax.set_xlabel(xlabel)
  loss_ax.set_ylabel("train query loss after the last inner step")
  loss_ax.set_title("Training loss (faint: per compiled call; solid: "
                    "moving average)", fontsize=10)
  figures.finish(loss_ax)
  for s in data.val:
    c = color[s.name]
    acc_ax.plot(s.x, s.y, color=c, marker="o", markersize=3,
                label=f"{label(s.name)} validation")
    acc_ax.fill_between(s.x, s.y - s.ci95, s.y + s.ci95, color=c,
                        alpha=0.2, linewidth=0)
  for s in data.test:
    acc_ax.errorbar(s.x, s.y, yerr=s.ci95, color=color[s.name], marker="*",
                    markersize=10, capsize=4, linestyle="none",
                    label=f"{label(s.name)} test")
  if not data.val:
    figures.note(acc_ax, "no validation during training\n"
                 "(config.eval_every = 0 or no validation tasks);\n"
                 "stars: test accuracy at the end")
  acc_ax.set_xlabel(xlabel)
  acc_ax.set_ylabel("query accuracy after adaptation")
  acc_ax.set_title("Validation accuracy ± 95% CI; stars: test ± 95% CI",
                   fontsize=10)
  if data.raw:
    acc_ax.set_xlim(loss_ax.get_xlim())
  figures.finish(acc_ax, fontsize=8)
  return fig


def plot_training_loss(results: Sequence, path: str) -> str:
  """Writes the training picture to ``path``; returns ``path``."""
  return figures.save(draw_training(training_data(results)), path)


class AdaptationData(NamedTuple):
  """What the adaptation picture draws: per algorithm, inner step (0 =
  before any inner step) against the test query loss / accuracy, mean over
  the test tasks with its 95% CI (``ci95`` None for old records that only
  kept the per-step means, which then start at step 1)."""
  loss: list
  accuracy: list


def _adaptation(r, what: str) -> Optional[Series]:
  curve = getattr(r, f"test_adaptation_{what}")
  if curve:
    ci = getattr(r, f"test_adaptation_{what}_ci95")
    return Series(r.name, np.arange(len(curve), dtype=np.float64),
                  np.asarray(curve, np.float64),
                  None if ci is None else np.asarray(ci, np.float64))
  steps = getattr(r, f"test_step_{what}")
  if steps:
    return Series(r.name, np.arange(1, len(steps) + 1, dtype=np.float64),
                  np.asarray(steps, np.float64))
  return None


def adaptation_data(results: Sequence) -> AdaptationData:
  """The numbers of the adaptation picture."""
  results = list(map(as_result, results))
  pick = lambda what: [s for s in (_adaptation(r, what) for r in results)
                       if s is not None]
  return AdaptationData(pick("loss"), pick("accuracy"))


def draw_adaptation(data: AdaptationData):
  """Test query loss (left) and accuracy (right) against the inner step,
  with 95% CI bands over the test tasks."""
  color = figures.colors([s.name for s in data.loss + data.accuracy])
  fig = figures.figure((11, 4.2))
  axes = fig.subplots(1, 2)
  for ax, series, what in zip(axes, (data.loss, data.accuracy),
                              ("loss", "accuracy")):
    for s in series:
      c = color[s.name]
      ax.plot(s.x, s.y, color=c, marker="o", markersize=4,
              label=label(s.name))
      if s.ci95 is not None:
        ax.fill_between(s.x, s.y - s.ci95, s.y + s.ci95, color=c,
                        alpha=0.2, linewidth=0)
    ax.set_xlabel("inner step (0: before adaptation)")
    ax.set_ylabel(f"test query {what} (mean over tasks)")
    ax.set_title(f"Adaptation on the test tasks: {what} ± 95% CI",
                 fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    figures.finish(ax)
  return fig


def plot_adaptation_loss(results: Sequence, path: str) -> str:
  """Writes the adaptation picture to ``path``; returns ``path``."""
  return figures.save(draw_adaptation(adaptation_data(results)), path)
