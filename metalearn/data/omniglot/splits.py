"""Named train / val / test splits of the Omniglot classes: the datasets.

Each split is a fixed partition of the 1,623 TFDS labels (background
``train`` split 0..963, evaluation ``test`` split 964..1622); ``load_splits``
returns the cached images of each part. Every name in ``SPLIT_NAMES`` is a
registered dataset (``config.dataset``): 28x28 grayscale, uint8 {0, 1}, 20
drawings per class. No TensorFlow unless the cache must be built.
"""

import hashlib
import os

import ml_collections
import numpy as np

from metalearn.data import episodes
from metalearn.data import images
from metalearn.data import registry
from metalearn.data.omniglot import access
from metalearn.data.omniglot import store

SPLIT_NAMES = ("lake", "vinyals", "mamlpp", "tfds")
# name -> (train, val, test) class counts, before rotation.
SPLIT_SIZES = {
    "lake": (864, 100, 659),
    "vinyals": (1100, 100, 423),
    "mamlpp": (1150, 50, 423),
    "tfds": (964, 0, 659),
}
SPLIT_SEED = 0


def _check_split_name(name: str) -> None:
  if name not in SPLIT_NAMES:
    raise ValueError(f"name={name!r} is not a known split; valid names: "
                     f"{', '.join(SPLIT_NAMES)}")


def _seeded_order(labels: np.ndarray, salt: str) -> np.ndarray:
  """Labels in a fixed pseudo-random order (sha256 of salt/seed/label).

  Independent of numpy's RNG, so splits never change between versions.
  """
  keys = [hashlib.sha256(f"{salt}/{SPLIT_SEED}/{int(l)}".encode()).digest()
          for l in labels]
  return np.asarray(labels)[sorted(range(len(keys)), key=keys.__getitem__)]


def split_labels(name: str, background: np.ndarray, evaluation: np.ndarray
                ) -> images.Splits:
  """TFDS labels of each split's classes, each sorted ascending.

  Args:
    name: "lake" (background vs evaluation alphabets, 100 background
      characters held out for val), "vinyals" (1200 / 423 characters of all
      1623 by a seeded permutation; 100 of the 1200 for val), "mamlpp"
      (the same permutation; 50 of the 1200 for val) or "tfds" (TFDS's own
      splits: all background characters for train, no val, all evaluation
      characters for test).
    background: [964] labels of the TFDS ``train`` split.
    evaluation: [659] labels of the TFDS ``test`` split.

  Returns:
    ``Splits`` of int32 label arrays (val is [0] for "tfds").
  """
  _check_split_name(name)
  if name == "tfds":
    train, val, test = background, np.zeros([0], np.int32), evaluation
  elif name == "lake":
    order = _seeded_order(background, "lake")
    n_val = SPLIT_SIZES[name][1]
    train, val, test = order[n_val:], order[:n_val], np.asarray(evaluation)
  else:
    order = _seeded_order(np.concatenate([background, evaluation]), "vinyals")
    n_train, n_val, _ = SPLIT_SIZES[name]
    n_pool = n_train + n_val
    train, val, test = order[n_val:n_pool], order[:n_val], order[n_pool:]
  return images.Splits(*(np.sort(x).astype(np.int32)
                         for x in (train, val, test)))


def load_splits(name: str, cache_dir: str | os.PathLike | None = None, *,
                rotate_train: bool = False) -> images.Splits:
  """Loads a named split from the cache (no TensorFlow needed).

  Args:
    name: one of ``SPLIT_NAMES``; see ``split_labels`` and ``SPLIT_SIZES``.
    cache_dir: cache dir; see ``store.resolve_cache_dir``.
    rotate_train: add the 90/180/270 degree rotations of every training
      character as new classes (train becomes [4 C, 20, 28, 28]; class
      ``r * C + c`` is class ``c`` turned ``r`` times, as in
      ``episodes.rotate_classes``). Val and test are never rotated.

  Returns:
    ``Splits`` of uint8 image arrays [C, 20, 28, 28] (val of "tfds" is
    [0, 20, 28, 28]).
  """
  _check_split_name(name)
  background = access.load_cached("train", cache_dir)
  evaluation = access.load_cached("test", cache_dir)
  every = np.concatenate([background.images, evaluation.images])
  labels = np.concatenate([background.labels, evaluation.labels])
  row = {int(l): i for i, l in enumerate(labels)}
  split = split_labels(name, background.labels, evaluation.labels)
  out = images.Splits(*(every[np.asarray([row[int(l)] for l in part], np.intp)]
                        for part in split))
  if rotate_train:
    out = out._replace(train=episodes.rotate_classes(out.train))
  return out


def _load_config(name: str):
  """``load_splits(config)`` of split ``name``: the cache of
  ``config.cache_dir``, built from ``config.omniglot_dir`` if needed."""
  def load(config: ml_collections.ConfigDict) -> images.Splits:
    cache_dir = access.ensure_cache(config.omniglot_dir or None,
                                    config.cache_dir or None, progress=True)
    return load_splits(name, cache_dir)
  return load


DATASETS = {name: registry.register(images.image_dataset(
    name, f"Omniglot ({name!r} split)", _load_config(name),
    input_shape=(store.IMAGE_SIZE, store.IMAGE_SIZE, 1),
    examples_per_class=store.NUM_DRAWINGS)) for name in SPLIT_NAMES}
