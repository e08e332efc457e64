"""Labelled numpy arrays as class-major data: ``from_arrays(x, y)``.

Images ``x`` [N, H, W] or [N, H, W, ch] and labels ``y`` [N] (integers or
strings) become :class:`~metalearn.data.ragged.RaggedClasses` (classes may
have different numbers of examples; none is dropped or cut), with the
episode sizes to draw. ``metalearn.train_maml(model, tasks=from_arrays(x, y,
n_way=5, k_shot=1, n_query=5))`` meta-trains on them, sampling episodes on
the device inside the compiled step.

Pixels reach the model in [0, 1]: uint8 images are kept as uint8 (a quarter
of the device memory of float32) and scaled by 1/255 in the sampler; float
images are taken as already in [0, 1] (a warning says when they are not).
"""

from typing import NamedTuple
import warnings

import numpy as np

from metalearn.data import ragged


class ArrayEpisodes(NamedTuple):
  """Class-major images from arrays, and the episodes to draw from them.

  Attributes:
    classes: the images, uint8 or float32 [N, H, W, ch], class by class.
    class_names: [C] the label of each class (sorted: numbers ascending,
      strings in code-point order).
    n_way: classes per task.
    k_shot: support examples per class.
    n_query: query examples per class.
    rotate: also draw the 90-degree rotations of each class as classes.
  """
  classes: ragged.RaggedClasses
  class_names: np.ndarray
  n_way: int
  k_shot: int
  n_query: int
  rotate: bool = False

  def sizes(self) -> dict:
    """The keywords of :func:`metalearn.data.sample_tasks` but the batch."""
    return dict(n_way=self.n_way, k_shot=self.k_shot, n_query=self.n_query,
                rotate=self.rotate)


def _images(x) -> np.ndarray:
  """[N, H, W(, ch)] uint8 or float -> [N, H, W, ch], uint8 or float32."""
  x = np.asarray(x)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(f"x must be images [N, H, W] or [N, H, W, channels]; "
                     f"got shape {x.shape}.")
  if x.dtype == np.uint8:
    return x
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"x must be uint8 (0..255) or float (0..1) images; got "
                     f"dtype {x.dtype}.")
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise ValueError("x holds non-finite values (NaN or inf).")
  if x.size and (x.min() < 0 or x.max() > 1):
    warnings.warn(f"x has values from {x.min():g} to {x.max():g}; float "
                  "images are fed to the model as they are, and [0, 1] is "
                  "expected (0..255: pass uint8, or divide by 255).",
                  stacklevel=3)
  return x


def from_arrays(x, y, *, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                rotate: bool = False) -> ArrayEpisodes:
  """Labelled images -> class-major data and the episodes to draw.

  Args:
    x: [N, H, W] (one channel) or [N, H, W, ch] images; uint8 0..255
      (scaled into [0, 1] when sampled) or float in [0, 1].
    y: [N] labels, integers or strings; examples sharing a label are a
      class. Classes may have different numbers of examples.
    n_way: classes per task, in [2, C] ([2, 4 C] with ``rotate``).
    k_shot: support examples per class, >= 1.
    n_query: query examples per class, >= 1; every class needs at least
      ``k_shot + n_query`` examples.
    rotate: add the 90-degree rotations of each class as new classes
      (square images only).

  Returns:
    An :class:`ArrayEpisodes`; pass it as ``tasks`` to
    :func:`metalearn.train_maml`, or its ``classes`` to
    :func:`metalearn.data.sample_tasks` / ``fixed_tasks``.

  Raises:
    ValueError: naming the argument (and, for a class too small, the class).
  """
  images = _images(x)
  y = np.asarray(y)
  if y.dtype == object and all(isinstance(v, str) for v in y.ravel()):
    y = y.astype(str)
  if y.ndim != 1 or len(y) != len(images):
    raise ValueError(f"y must be one label per image, shape [{len(images)}]; "
                     f"got shape {y.shape}.")
  if not (np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "US"):
    raise ValueError(f"y must hold integer or string labels; got dtype "
                     f"{y.dtype}.")
  names, labels = np.unique(y, return_inverse=True)
  classes = ragged.from_labels(images, labels.reshape(-1), len(names))
  for name, value, low in (("k_shot", k_shot, 1), ("n_query", n_query, 1),
                           ("n_way", n_way, 2)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
        value < low):
      raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
  space = len(names) * (4 if rotate else 1)
  if n_way > space:
    raise ValueError(f"n_way={n_way} is more than the {space} classes in y"
                     f"{' (x4 rotations)' if rotate else ''}.")
  if rotate and images.shape[1] != images.shape[2]:
    raise ValueError(f"rotate=True needs square images; got "
                     f"{images.shape[1]}x{images.shape[2]}.")
  counts = np.asarray(classes.counts)
  small = np.flatnonzero(counts < k_shot + n_query)
  if len(small):
    listed = ", ".join(f"{names[i].item()!r} ({counts[i]})"
                       for i in small[:5])
    raise ValueError(
        f"every class needs k_shot + n_query = {k_shot + n_query} examples; "
        f"{len(small)} of {len(names)} have fewer: {listed}"
        f"{', ...' * (len(small) > 5)}. Leave them out of x and y, or lower "
        "k_shot or n_query.")
  return ArrayEpisodes(classes, names, int(n_way), int(k_shot), int(n_query),
                       bool(rotate))
