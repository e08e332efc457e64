"""One entry point from a config to its image dataset's train / val / test.

``config.dataset`` names an Omniglot split (``splits.SPLIT_NAMES``: 28x28
grayscale, uint8 {0, 1}) or ``"mini_imagenet"`` (84x84 RGB, uint8 0..255).
Both come back as class-major uint8 arrays for ``episodes.sample_tasks``.
"""

from typing import NamedTuple

import ml_collections
import numpy as np

from metalearn.data import miniimagenet
from metalearn.data import omniglot
from metalearn.data import splits

IMAGE_DATASETS = splits.SPLIT_NAMES + ("mini_imagenet",)


class Dataset(NamedTuple):
  """A dataset's classes and the model input shape.

  Attributes:
    train: [C, D, H, W] (grayscale) or [C, D, H, W, 3] (colour) uint8.
    val: as ``train``, the validation classes (may have C = 0).
    test: as ``train``, the test classes.
    input_shape: (H, W, channels) of one sampled image, e.g. (28, 28, 1)
      for Omniglot and (84, 84, 3) for mini-ImageNet.
  """
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  input_shape: tuple[int, int, int]


def input_shape(images: np.ndarray) -> tuple[int, int, int]:
  """(H, W, channels) of the tasks ``episodes.sample_tasks`` makes of
  ``images`` [C, D, H, W] (channels 1) or [C, D, H, W, channels]."""
  height, width = images.shape[2:4]
  return (int(height), int(width),
          int(images.shape[4]) if images.ndim == 5 else 1)


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Loads ``config.dataset``, building its cache first if needed.

  Args:
    config: reads ``dataset`` (one of ``IMAGE_DATASETS``), ``cache_dir``
      ("" for the default), ``omniglot_dir`` (Omniglot: "" for the
      default sources) and ``data_dir`` (mini-ImageNet: the user's files,
      "" for $METALEARN_MINI_IMAGENET_DIR; unused once the cache exists).

  Returns:
    The ``Dataset``.
  """
  name = config.dataset
  if name in splits.SPLIT_NAMES:
    cache_dir = omniglot.ensure_cache(config.omniglot_dir or None,
                                      config.cache_dir or None, progress=True)
    parts = splits.load_splits(name, cache_dir)
  elif name == "mini_imagenet":
    cache_dir = miniimagenet.ensure_cache(config.data_dir or None,
                                          config.cache_dir or None,
                                          progress=True)
    parts = miniimagenet.load_splits(cache_dir)
  else:
    raise ValueError(f"config.dataset={name!r} is not a known dataset; "
                     f"valid: {', '.join(IMAGE_DATASETS)}")
  return Dataset(*parts, input_shape=input_shape(parts.train))
