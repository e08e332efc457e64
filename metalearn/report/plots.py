"""The report's pictures as PNG files: which there are, their captions, and
the learned MAML++ inner rates.

The curves live in :mod:`metalearn.report.curves`, the spread and the
trade-off in :mod:`metalearn.report.spread`; shared drawing helpers in
:mod:`metalearn.report.figures` (no pyplot, no global backend switch).
"""

import os
from typing import Callable, NamedTuple, Sequence

import numpy as np

from metalearn.report import figures
from metalearn.report.curves import plot_adaptation_loss
from metalearn.report.curves import plot_training_loss
from metalearn.report.records import as_result
from metalearn.report.records import label
from metalearn.report.spread import plot_task_accuracy
from metalearn.report.spread import plot_tradeoff


class InnerLrData(NamedTuple):
  """What the learned-rate heatmap draws.

  Attributes:
    name: the algorithm.
    layers: row labels, parameter paths such as ``conv0/kernel``.
    grid: [layers, inner_steps] the final rate (mean over a leaf's elements).
  """
  name: str
  layers: list
  grid: np.ndarray


def inner_lr_data(result) -> InnerLrData:
  """The heatmap's numbers from a record's ``inner_lrs``.

  Raises:
    ValueError: the record has no learned ``inner_lrs``.
  """
  r = as_result(result)
  if not r.inner_lrs:
    raise ValueError(f"{r.name} has no learned inner_lrs to plot.")
  layers = list(r.inner_lrs)
  return InnerLrData(r.name, layers, np.asarray(
      [r.inner_lrs[n] for n in layers], np.float64))


def draw_inner_lrs(data: InnerLrData):
  """Layer (rows) x inner step (columns), a diverging colour map centred at
  0: negative rates (a step up the support loss) show blue, positive red."""
  # pylint: disable=g-import-not-at-top
  from matplotlib.colors import CenteredNorm
  grid = data.grid
  steps = grid.shape[1]
  fig = figures.figure((max(5.5, 2.8 + 0.9 * steps),
                        1.5 + 0.32 * len(data.layers)))
  ax = fig.add_subplot()
  finite = grid[np.isfinite(grid)]
  half = float(np.max(np.abs(finite))) if finite.size else 1.0
  norm = CenteredNorm(vcenter=0.0, halfrange=half or 1.0)
  im = ax.imshow(grid, aspect="auto", cmap="RdBu_r", norm=norm)
  ax.set_xticks(range(steps), [str(i + 1) for i in range(steps)])
  ax.set_yticks(range(len(data.layers)), data.layers, fontsize=8)
  ax.set_xlabel("inner step")
  negative = int(np.sum(finite < 0))
  ax.set_title(f"{label(data.name)}: learned inner learning rates "
               f"({negative} negative)", fontsize=10)
  if grid.size <= 200:
    for (i, j), v in np.ndenumerate(grid):
      ax.text(j, i, f"{v + 0.0:.3g}", ha="center", va="center", fontsize=7,
              color="white" if abs(v) > 0.6 * norm.halfrange else "black",
              fontweight="bold" if v < 0 else "normal")
  fig.colorbar(im, ax=ax, label="rate (0 = white)")
  return fig


def plot_inner_lrs(result, path: str) -> str:
  """Writes the learned-rate heatmap of ``result`` to ``path``.

  Raises:
    ValueError: the record has no learned ``inner_lrs``.
  """
  return figures.save(draw_inner_lrs(inner_lr_data(result)), path)


class PlotSpec(NamedTuple):
  """One picture of the report: its file, what it says, how it is drawn."""
  file: str
  caption: str
  plot: Callable[[Sequence, str], str]


PLOTS = (
    PlotSpec("training_loss.png",
             "Training against the meta-step: the query loss after the last "
             "inner step of each compiled call (faint) and its moving "
             "average (solid); validation accuracy ± 95% CI when the run "
             "validated, and the final test accuracy ± 95% CI (stars).",
             plot_training_loss),
    PlotSpec("adaptation_loss.png",
             "Adaptation on the test tasks, from inner step 0 (the "
             "meta-learned weights before any inner step) to the last test "
             "step: query loss and accuracy, mean over tasks with 95% CI "
             "bands.", plot_adaptation_loss),
    PlotSpec("task_accuracy.png",
             "Accuracy of every test task (the same tasks for every "
             "algorithm): violin, points, mean ± 95% CI and the std.",
             plot_task_accuracy),
    PlotSpec("tradeoff.png",
             "Accuracy against training time and memory, ours beside the "
             "write-up's published runs (its own GPU and protocol: compare "
             "orders of magnitude, not ratios).", plot_tradeoff),
)
INNER_LRS_CAPTION = ("Learned inner learning rates of {name}, per layer and "
                     "inner step; the colour map is centred at 0, so a "
                     "negative rate shows blue.")


def caption(file: str) -> str:
  """The caption of a file :func:`write_plots` writes ("" if unknown)."""
  for spec in PLOTS:
    if spec.file == file:
      return spec.caption
  if file.startswith("inner_lrs_") and file.endswith(".png"):
    return INNER_LRS_CAPTION.format(name=file[len("inner_lrs_"):-4])
  return ""


def write_plots(results: Sequence, output_dir: str) -> list[str]:
  """Writes every picture into ``output_dir`` (created if missing).

  Args:
    results: records (or dicts), failed ones included (they are skipped).
    output_dir: where the PNGs go.

  Returns:
    The file names written, relative to ``output_dir``: those of
    :data:`PLOTS` in order, then one ``inner_lrs_<name>.png`` per record
    with learned inner rates.
  """
  results = [as_result(r) for r in results]
  os.makedirs(output_dir, exist_ok=True)
  jobs = [(spec.file, spec.plot, results) for spec in PLOTS]
  jobs += [(f"inner_lrs_{r.name}.png", plot_inner_lrs, r)
           for r in results if r.inner_lrs]
  for name, plot, data in jobs:
    plot(data, os.path.join(output_dir, name))
  return [name for name, _, _ in jobs]
