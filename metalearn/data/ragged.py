"""Classes of unequal size: flat images with per-class offsets and counts.

A class-major array ``[C, D, H, W(, ch)]`` needs every class to hold the same
number D of examples. :class:`RaggedClasses` keeps every example instead:
the examples of all classes one after another in ``images`` [N, H, W(, ch)],
class ``c`` in rows ``offsets[c] : offsets[c] + counts[c]``. Nothing is
padded and nothing is dropped; the episode sampler
(:func:`metalearn.data.episodes.sample_tasks`) takes either form and draws
each class's examples uniformly from that class's own count.

Pixel scaling follows the rectangular rule, by the channel axis: grayscale
``[N, H, W]`` is cast to float32 unchanged, ``[N, H, W, ch]`` uint8 is
scaled into [0, 1] (ch may be 1), other dtypes are cast unchanged.

The helpers here run on the host (numpy); a ``RaggedClasses`` is a pytree,
so ``jax.device_put`` puts all three arrays on the device at once.
"""

from typing import Any, NamedTuple, Sequence

import numpy as np


class RaggedClasses(NamedTuple):
  """Examples of C classes of unequal size, stored flat.

  Attributes:
    images: [N, H, W] (grayscale) or [N, H, W, ch] examples, class by class.
    offsets: [C] int32, the first row of each class in ``images``.
    counts: [C] int32, each class's number of examples (>= 1).
  """
  images: Any
  offsets: Any
  counts: Any


def is_ragged(images) -> bool:
  """Whether ``images`` is a :class:`RaggedClasses` (else a class-major
  array [C, D, H, W(, ch)])."""
  return isinstance(images, RaggedClasses)


def from_class_list(per_class: Sequence[np.ndarray]) -> RaggedClasses:
  """One array [D_c, H, W(, ch)] per class -> ``RaggedClasses``.

  Args:
    per_class: C arrays of the same dtype and image shape, each with at
      least one example.

  Returns:
    The classes in the given order, ``images`` their concatenation.
  """
  if not len(per_class):
    raise ValueError("from_class_list needs at least one class.")
  counts = np.asarray([len(x) for x in per_class], np.int32)
  if counts.min() < 1:
    raise ValueError(f"class {int(np.argmin(counts))} has no examples.")
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
  return RaggedClasses(np.concatenate(list(per_class)), offsets, counts)


def from_labels(images: np.ndarray, labels: np.ndarray, num_classes: int
               ) -> RaggedClasses:
  """Examples with integer labels in [0, C) -> ``RaggedClasses``.

  Args:
    images: [N, H, W(, ch)].
    labels: [N] integers in [0, num_classes); each class occurs at least
      once.
    num_classes: C.

  Returns:
    Class ``c`` holds the examples labelled ``c``, in their original order
    (a stable sort).
  """
  labels = np.asarray(labels)
  counts = np.bincount(labels, minlength=num_classes).astype(np.int32)
  if len(counts) != num_classes or counts.min() < 1:
    raise ValueError(f"labels must cover every class in [0, {num_classes}) "
                     f"at least once; counts per class: {counts.tolist()}.")
  order = np.argsort(labels, kind="stable")
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
  return RaggedClasses(np.asarray(images)[order], offsets, counts)


def from_rectangular(images: np.ndarray) -> RaggedClasses:
  """[C, D, H, W(, ch)] -> ``RaggedClasses`` with D examples per class."""
  c, d = images.shape[:2]
  return RaggedClasses(np.reshape(images, (c * d, *images.shape[2:])),
                       np.arange(0, c * d, d, dtype=np.int32),
                       np.full((c,), d, np.int32))


def num_classes(images) -> int:
  """C, for either form."""
  return int((images.counts if is_ragged(images) else images).shape[0])


def class_sizes(images) -> np.ndarray:
  """[C] int examples per class, for either form (host numpy)."""
  if is_ragged(images):
    return np.asarray(images.counts)
  return np.full((images.shape[0],), images.shape[1], np.int64)


def image_shape(images) -> tuple[int, ...]:
  """One example's stored shape, (H, W) or (H, W, ch), for either form."""
  return tuple((images.images if is_ragged(images) else images)
               .shape[1 if is_ragged(images) else 2:])


def select(images: RaggedClasses, classes: Sequence[int]) -> RaggedClasses:
  """The given classes (indices into C), in that order; a new flat array."""
  counts, offsets = np.asarray(images.counts), np.asarray(images.offsets)
  pixels = np.asarray(images.images)
  if not len(classes):
    return RaggedClasses(pixels[:0], np.zeros((0,), np.int32),
                         np.zeros((0,), np.int32))
  return from_class_list([pixels[offsets[c]:offsets[c] + counts[c]]
                          for c in classes])


def at_least(images: RaggedClasses, min_count: int
            ) -> tuple[RaggedClasses, np.ndarray]:
  """The classes with at least ``min_count`` examples.

  Returns:
    ``(kept classes, indices of the dropped classes)``.
  """
  counts = np.asarray(images.counts)
  keep = np.flatnonzero(counts >= min_count)
  if len(keep) == len(counts):
    return images, np.zeros((0,), np.int64)
  return select(images, keep), np.flatnonzero(counts < min_count)


def rotate_classes(images: RaggedClasses) -> RaggedClasses:
  """4 C classes: class ``r * C + c`` is class ``c`` turned ``r`` times by 90
  degrees (over the H, W axes), as for class-major arrays."""
  pixels = np.asarray(images.images)
  n = pixels.shape[0]
  offsets = np.asarray(images.offsets)
  return RaggedClasses(
      np.concatenate([np.rot90(pixels, r, axes=(1, 2)) for r in range(4)]),
      np.concatenate([offsets + r * n for r in range(4)]).astype(np.int32),
      np.tile(np.asarray(images.counts), 4).astype(np.int32))
