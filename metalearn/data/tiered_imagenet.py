"""tiered-ImageNet from the user's files: a ``train/ val/ test/`` tree.

tiered-ImageNet (Ren et al. 2018): 608 ImageNet classes grouped into 34
high-level categories, 351 train / 97 val / 160 test classes (20 / 6 / 8
categories, so no test class shares a category with a training class),
about 779,000 images, used at 84x84. metalearn never downloads it (ImageNet
terms of access). It reads the class-folder tree::

  DIR/train/<class>/*.jpg   (351 classes)
  DIR/val/<class>/*.jpg     (97)
  DIR/test/<class>/*.jpg    (160)

with any image format Pillow opens, classes at any depth below each split
folder (``DIR/train/<category>/<class>/`` works too). The pickles of Ren et
al.'s release (``train_images_png.pkl`` and ``train_labels.pkl``, ...) are
not read: write their images out as such folders first.

Everything else is the ``folders`` dataset's (:mod:`metalearn.data.folders`):
the tree's own split, images converted to ``config.channels`` and resized
to ``config.image_size``, the verified cache rebuilt when the files change.
The whole cache is held in memory and on the device: at 84x84 RGB the train
split is about 9.5 GB (uint8), all three about 16.5 GB.

Registered as the dataset ``tiered_imagenet`` (``config.data_dir``,
``config.image_size``, ``config.channels``, ``config.cache_dir``).
"""

import os
from pathlib import Path
import warnings

import ml_collections
import numpy as np

from metalearn.data import class_cache
from metalearn.data import folders
from metalearn.data import images as images_lib
from metalearn.data import registry

NUM_CLASSES = {"train": 351, "val": 97, "test": 160}  # Ren et al. 2018.
HOW = ("put tiered-ImageNet's class folders in DIR/train/<class>/*.jpg "
       "(351 classes), DIR/val/<class>/*.jpg (97) and DIR/test/<class>/*.jpg "
       "(160), any image format Pillow reads, and set "
       "--config.data_dir=DIR")


def tree_root(data_dir: str | os.PathLike) -> Path:
  """``data_dir``, checked to hold ``train/``, ``val/`` and ``test/``.

  Raises:
    ValueError: naming ``config.data_dir`` and saying what to put where.
  """
  root = Path(data_dir).expanduser()
  missing = [f"{s}/" for s in class_cache.SPLITS if not (root / s).is_dir()]
  if missing:
    raise registry.config_error(
        "data_dir", str(root), f"it has no {', '.join(missing)} folder"
        f"{'s' * (len(missing) > 1)}; {HOW}")
  return root


def class_counts(cache_dir: Path) -> dict[str, int]:
  """{split: classes} of a built cache, read without its images."""
  counts = {}
  for split in class_cache.SPLITS:
    with np.load(Path(cache_dir) / f"{split}.npz") as z:
      counts[split] = len(z["class_names"])
  return counts


def _load(config: ml_collections.ConfigDict) -> images_lib.Splits:
  out = folders.ensure_cache(
      tree_root(config.data_dir), config.cache_dir or None,
      image_size=config.image_size, channels=config.channels,
      progress=bool(config.progress))
  counts = class_counts(out)
  if counts != NUM_CLASSES:
    warnings.warn(
        f"tiered_imagenet: {config.data_dir} has {counts['train']} / "
        f"{counts['val']} / {counts['test']} train / val / test classes, "
        f"not Ren et al.'s {NUM_CLASSES['train']} / {NUM_CLASSES['val']} / "
        f"{NUM_CLASSES['test']}; using them as they are.", stacklevel=2)
  return class_cache.config_splits(config, out, "tiered_imagenet")


def _check(config: ml_collections.ConfigDict) -> None:
  if not config.data_dir:
    raise registry.config_error(
        "data_dir", config.data_dir,
        f"the 'tiered_imagenet' dataset reads your files: {HOW}")


DATASET = class_cache.register(
    "tiered_imagenet", "tiered-ImageNet (351/97/160 classes, your files)",
    _load, (_check, class_cache.check_image_fields))
