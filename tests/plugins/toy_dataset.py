"""A user's dataset in one file: 12x12 grey squares, each class a bright
patch at its own place, with noise.

``--config.plugins=PATH/toy_dataset.py --config.dataset=toy_squares``
trains on it.
"""

import numpy as np

import metalearn as ml


def _images(seed: int, classes: int) -> np.ndarray:
  """[classes, 10, 12, 12] uint8 in {0, 1}."""
  rng = np.random.default_rng(seed)
  images = (rng.random((classes, 10, 12, 12)) < 0.1).astype(np.uint8)
  for c in range(classes):
    row, col = divmod(c * 5 % 81, 9)
    images[c, :, row:row + 4, col:col + 4] = 1
  return images


def load_splits(config):
  del config  # nothing to read: generated
  return ml.data.Splits(_images(0, 12), _images(1, 4), _images(2, 6))


ml.data.register(ml.data.image_dataset(
    "toy_squares", "toy squares (12x12, generated)", load_splits,
    input_shape=(12, 12, 1), examples_per_class=10))
