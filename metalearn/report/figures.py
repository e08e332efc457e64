"""What every picture of the report shares: an Agg canvas of its own, one
colour per algorithm, a moving average and a 95% CI over tasks.

matplotlib is imported lazily, inside the functions, and every figure is a
:class:`matplotlib.figure.Figure` drawn on its own Agg canvas: nothing here
touches pyplot or switches matplotlib's global backend, at import or ever.
"""

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

# matplotlib's tab10, by position: the same algorithm keeps its colour in
# every picture of one report.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
DPI = 110


class Series(NamedTuple):
  """One line of a picture, as drawn.

  Attributes:
    name: the algorithm.
    x: [n] positions (meta-steps, inner steps, ...).
    y: [n] values.
    ci95: [n] half-width of the 95% CI band around ``y``, or None.
  """
  name: str
  x: np.ndarray
  y: np.ndarray
  ci95: Optional[np.ndarray] = None


def figure(figsize: tuple[float, float]):
  """A new figure on its own Agg canvas (no pyplot, no global state)."""
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=figsize, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def save(fig, path: str) -> str:
  """Writes the figure as a PNG; returns ``path``."""
  fig.savefig(path, dpi=DPI, format="png")
  return path


def colors(names: Sequence[str]) -> dict[str, str]:
  """{name: colour}, by order of first appearance."""
  out = {}
  for name in names:
    out.setdefault(name, PALETTE[len(out) % len(PALETTE)])
  return out


def moving_average(y: np.ndarray, window: Optional[int] = None) -> np.ndarray:
  """Trailing mean over ``window`` points (fewer at the start).

  Args:
    y: [n] values.
    window: points per mean; default a tenth of the series, at least 3
      (at most ``n``).

  Returns:
    [n] the means; ``out[i] = mean(y[max(0, i - window + 1):i + 1])``.
  """
  y = np.asarray(y, np.float64)
  if not y.size:
    return y
  if window is None:
    window = max(3, len(y) // 10)
  window = max(1, min(window, len(y)))
  total = np.concatenate([[0.0], np.cumsum(y)])
  i = np.arange(1, len(y) + 1)
  lo = np.maximum(0, i - window)
  return (total[i] - total[lo]) / (i - lo)


def mean_ci95(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and 95% CI half-width (1.96 std / sqrt(n)) over axis 0.

  Args:
    values: [num_tasks, ...].

  Returns:
    ``(mean, ci95)``, each shaped ``values.shape[1:]``.
  """
  values = np.asarray(values, np.float64)
  n = values.shape[0]
  return values.mean(axis=0), 1.96 * values.std(axis=0) / math.sqrt(max(n, 1))


def finish(ax, *, legend: bool = True, **legend_kw) -> None:
  """Grid, and a legend when anything is labelled."""
  ax.grid(alpha=0.3)
  if legend and ax.get_legend_handles_labels()[0]:
    ax.legend(**legend_kw)


def note(ax, message: str) -> None:
  """Writes ``message`` in the middle of an empty axes."""
  ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True,
          transform=ax.transAxes, fontsize=9, color="0.35")
