"""Data checked once at the door, on the host, before anything compiles.

What a model is fed follows one documented scaling (docs/data.md):
grayscale images as they are stored (Omniglot: {0, 1}), uint8 colour images
scaled from 0..255 into [0, 1] by the sampler, float images in [0, 1].

* Non-finite values (NaN, inf) anywhere are refused: a ``ValueError`` names
  the array and the index of the first bad element.
* Images outside their documented range (float images beyond [0, 1], e.g.
  grayscale given as 0..255) are accepted with one warning per array name,
  since training may still work but the model's learning rates were tuned
  for the documented range.
* Class labels must be integers in ``[0, n)``; the first bad one is named.

The checks read every element once (``numpy`` on the host); they are meant
for a task pool or a dataset array, and for the first batch of a sampler or
an iterable, not for every meta-step.
"""

import warnings
from typing import Optional

import jax
import numpy as np

from metalearn.types import Task

_warned: set[str] = set()


class RangeWarning(UserWarning):
  """An image array lies outside its documented value range."""


def _host(array) -> np.ndarray:
  return np.asarray(array)


def _first(mask: np.ndarray) -> tuple[int, ...]:
  return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)),
                                                mask.shape))


def _index(index: tuple[int, ...]) -> str:
  return "[" + ", ".join(str(i) for i in index) + "]"


def check_finite(name: str, array) -> None:
  """Raises ValueError naming ``name`` and its first non-finite element."""
  a = _host(array)
  if not np.issubdtype(a.dtype, np.inexact):
    return
  bad = ~np.isfinite(a)
  if bad.any():
    where = _first(bad)
    raise ValueError(
        f"{name} holds {int(bad.sum())} non-finite value(s); the first is "
        f"{a[where]} at index {_index(where)} (shape {a.shape}).")


def warn_once(name: str, message: str) -> None:
  """Warns ``message`` the first time only, per ``name``, per process."""
  if name not in _warned:
    _warned.add(name)
    warnings.warn(message, RangeWarning, stacklevel=3)


def check_image_range(name: str, array, *, low: float = 0.0,
                      high: float = 1.0, once_per: Optional[str] = None
                      ) -> None:
  """Warns once (per ``once_per``, default ``name``) when ``array``'s
  values leave ``[low, high]``."""
  a = _host(array)
  if a.size == 0:
    return
  lo, hi = float(a.min()), float(a.max())
  if lo < low or hi > high:
    hint = (" (0..255: divide by 255)" if hi > 1.0 and hi <= 255.0
            and low == 0.0 and high == 1.0 else "")
    warn_once(once_per or name,
              f"{name} has values from {lo:g} to {hi:g}; images are "
              f"expected in [{low:g}, {high:g}]{hint}.")


def check_labels(name: str, labels, n: Optional[int] = None) -> None:
  """Integer labels in ``[0, n)`` (``n`` None: only ``>= 0``)."""
  a = _host(labels)
  if not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"{name} must hold integer class labels; got dtype "
                     f"{a.dtype}.")
  bad = (a < 0) if n is None else ((a < 0) | (a >= n))
  if bad.any():
    where = _first(bad)
    bound = ">= 0" if n is None else f"in [0, {n})"
    raise ValueError(f"{name} must hold labels {bound}; got {a[where]} at "
                     f"index {_index(where)}.")


def check_images(name: str, images) -> None:
  """A class-major image array for the sampler ([C, D, H, W] or
  [C, D, H, W, ch]): finite, uint8 or float; grayscale uint8 in {0, 1},
  colour uint8 any of 0..255, float in [0, 1]."""
  a = _host(images)
  if not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
    raise ValueError(f"{name} must be uint8 or float images; got dtype "
                     f"{a.dtype}.")
  check_finite(name, a)
  colour_uint8 = a.dtype == np.uint8 and a.ndim == 5
  if not colour_uint8:
    check_image_range(name, a)


def check_task_batch(task: Task, what: str, *,
                     integer_targets: bool = True) -> None:
  """A batch of tasks (leading task axis), every element.

  Args:
    task: a :class:`~metalearn.types.Task` of arrays [T, N, ...].
    what: how the caller names it, e.g. ``"tasks (a fixed pool)"``.
    integer_targets: classification (labels ``[0, N)`` per task's support
      size) or not (targets only checked finite).

  Raises:
    ValueError: naming ``what``'s field and the first bad index.
  """
  for field in ("support_x", "query_x"):
    x = _host(getattr(task, field))
    check_finite(f"{what}.{field}", x)
    if x.ndim == 5:  # [T, N, H, W, C]: images, fed to the model as they are.
      check_image_range(f"{what}.{field}", x, once_per=what)
  n = int(np.shape(task.support_y)[1]) if np.ndim(task.support_y) > 1 else None
  for field in ("support_y", "query_y"):
    y = getattr(task, field)
    if integer_targets:
      check_labels(f"{what}.{field}", y, n)
    else:
      check_finite(f"{what}.{field}", y)


def check_data(name: str, tree) -> None:
  """Every array leaf of ``tree`` (e.g. a sampler's ``task_data``): image
  arrays ([C, D, H, W] or [C, D, H, W, ch], uint8 or float) as
  :func:`check_images`, other arrays finite."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not hasattr(leaf, "dtype"):
      continue
    where = name + jax.tree_util.keystr(path)
    a = _host(leaf)
    if a.ndim in (4, 5) and (a.dtype == np.uint8 or
                             np.issubdtype(a.dtype, np.floating)):
      check_images(where, a)
    else:
      check_finite(where, a)
