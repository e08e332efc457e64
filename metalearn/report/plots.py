"""PNG plots of a comparison: training loss, per-step test loss, learned
MAML++ inner rates.

matplotlib is imported lazily, inside the functions, and every figure is a
:class:`matplotlib.figure.Figure` drawn on its own Agg canvas: nothing here
touches pyplot or switches matplotlib's global backend, at import or ever.
"""

import os
from typing import Sequence

import numpy as np

from metalearn.report.records import as_result


def _figure(figsize: tuple[float, float]):
  """A new figure on its own Agg canvas (no pyplot, no global state)."""
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=figsize)
  FigureCanvasAgg(fig)
  return fig


def _save(fig, path: str) -> str:
  """Lays out and writes the PNG; returns ``path``."""
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  return path


def _smooth(y: np.ndarray) -> np.ndarray:
  """Trailing moving average over 1/20 of the series."""
  window = max(1, len(y) // 20)
  if window == 1:
    return y
  kernel = np.ones(window) / window
  return np.convolve(np.pad(y, (window - 1, 0), mode="edge"), kernel,
                     mode="valid")


def plot_training_loss(results: Sequence, path: str) -> str:
  """Training query loss after the last inner step, per meta-step.

  Args:
    results: records (or dicts); those without ``train_loss`` are skipped.
    path: the PNG to write.

  Returns:
    ``path``.
  """
  fig = _figure((7, 4))
  ax = fig.add_subplot()
  for r in map(as_result, results):
    if not r.train_loss:
      continue
    y = np.asarray(r.train_loss, np.float64)
    x = np.arange(1, len(y) + 1)
    (line,) = ax.plot(x, _smooth(y), label=r.name)
    ax.plot(x, y, color=line.get_color(), alpha=0.2, linewidth=0.8)
  ax.set_xlabel("meta-step")
  ax.set_ylabel("train query loss after last inner step")
  ax.set_title("Training loss (faint: raw, solid: moving average)")
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend()
  return _save(fig, path)


def plot_adaptation_loss(results: Sequence, path: str) -> str:
  """Test query loss after each inner step, mean over test tasks."""
  fig = _figure((6, 4))
  ax = fig.add_subplot()
  for r in map(as_result, results):
    if r.test_step_loss:
      steps = np.arange(1, len(r.test_step_loss) + 1)
      ax.plot(steps, r.test_step_loss, marker="o", label=r.name)
  ax.set_xlabel("inner step")
  ax.set_ylabel("test query loss (mean over tasks)")
  ax.set_title("Per-step adaptation on the test tasks")
  ax.xaxis.get_major_locator().set_params(integer=True)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend()
  return _save(fig, path)


def plot_inner_lrs(result, path: str) -> str:
  """Heatmap of learned inner rates: layer (rows) x inner step (columns).

  Raises:
    ValueError: the record has no learned ``inner_lrs``.
  """
  r = as_result(result)
  if not r.inner_lrs:
    raise ValueError(f"{r.name} has no learned inner_lrs to plot.")
  names = list(r.inner_lrs)
  grid = np.asarray([r.inner_lrs[n] for n in names], np.float64)
  steps = grid.shape[1]
  fig = _figure((max(5.0, 2.2 + 0.9 * steps), 1.4 + 0.32 * len(names)))
  ax = fig.add_subplot()
  im = ax.imshow(grid, aspect="auto", cmap="viridis")
  ax.set_xticks(range(steps), [str(i + 1) for i in range(steps)])
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
  """Writes every plot into ``output_dir`` (created if missing).

  Args:
    results: records (or dicts), failed ones included (they are skipped).
    output_dir: where the PNGs go.

  Returns:
    The file names written, relative to ``output_dir``:
    ``training_loss.png``, ``adaptation_loss.png`` and one
    ``inner_lrs_<name>.png`` per record with learned inner rates.
  """
  results = [as_result(r) for r in results]
  os.makedirs(output_dir, exist_ok=True)
  jobs = [("training_loss.png", plot_training_loss, results),
          ("adaptation_loss.png", plot_adaptation_loss, results)]
  jobs += [(f"inner_lrs_{r.name}.png", plot_inner_lrs, r)
           for r in results if r.inner_lrs]
  for name, plot, data in jobs:
    plot(data, os.path.join(output_dir, name))
  return [name for name, _, _ in jobs]
