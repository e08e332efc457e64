"""CUB-200-2011 from the files it ships in, in Chen et al. 2019's split.

CUB-200-2011 (Wah et al. 2011): 11,788 photos of 200 bird species, about
60 per species, in the layout of its archive ``CUB_200_2011.tgz``:
``CUB_200_2011/images/<id>.<name>/*.jpg`` with ids 001 to 200 (e.g.
``001.Black_footed_Albatross``). metalearn never downloads it: extract the
archive and set ``config.data_dir`` to the folder holding ``CUB_200_2011/``
(or to ``CUB_200_2011/`` itself).

The split is that of Chen et al. 2019 (``write_CUB_filelist.py`` of "A
Closer Look at Few-shot Classification"), :func:`chen_split`: the class
folders sorted by name (so by id), class ``i`` (0-based) goes to train when
``i % 2 == 0``, to val when ``i % 4 == 1`` and to test when ``i % 4 == 3``:
100 / 50 / 50 classes. Every image is read by the ``folders`` machinery
(:mod:`metalearn.data.folders`: converted to ``config.channels``, resized
to ``config.image_size``, cached and verified, rebuilt when the files
change).

Registered as the dataset ``cub`` (``config.data_dir``,
``config.image_size``, ``config.channels``, ``config.cache_dir``).
"""

import os
from pathlib import Path
import re
from typing import Sequence

import ml_collections

from metalearn.data import class_cache
from metalearn.data import folders
from metalearn.data import images as images_lib
from metalearn.data import registry

ARCHIVE_DIR = "CUB_200_2011"
NUM_CLASSES = 200
CLASS_FOLDER = re.compile(r"\d{3}\.[^/]+")
HOW = ("extract CUB_200_2011.tgz into a folder DIR, so that "
       "DIR/CUB_200_2011/images/ holds the 200 class folders "
       "001.Black_footed_Albatross/ ... 200.Common_Yellowthroat/ with their "
       "*.jpg files, and set --config.data_dir=DIR")


def chen_split(names: Sequence[str]) -> dict[str, list[str]]:
  """Chen et al. 2019's split of the class folders ``<id>.<name>`` (other
  names are left out): sorted, class ``i`` to train if ``i % 2 == 0``, val
  if ``i % 4 == 1``, test if ``i % 4 == 3``."""
  ordered = sorted(n for n in names if CLASS_FOLDER.fullmatch(n))
  return {"train": ordered[0::2], "val": ordered[1::4],
          "test": ordered[3::4]}


def images_dir(data_dir: str | os.PathLike) -> Path:
  """``DIR/CUB_200_2011/images`` (or ``DIR/images`` when ``data_dir`` is
  ``CUB_200_2011/`` itself), checked to hold the 200 class folders.

  Raises:
    ValueError: naming ``config.data_dir`` and saying what to put where.
  """
  root = Path(data_dir).expanduser()
  found = next((d for d in (root / ARCHIVE_DIR / "images", root / "images")
                if d.is_dir()), None)
  if found is None:
    raise registry.config_error(
        "data_dir", str(root), f"there is no {ARCHIVE_DIR}/images/ folder "
        f"in it; {HOW}")
  classes = sorted(d.name for d in found.iterdir()
                   if d.is_dir() and CLASS_FOLDER.fullmatch(d.name))
  if len(classes) != NUM_CLASSES:
    raise registry.config_error(
        "data_dir", str(root), f"{found} holds {len(classes)} class folders "
        f"<id>.<name>/, not CUB-200-2011's {NUM_CLASSES} (an incomplete "
        f"extraction?); {HOW}")
  return found


def _load(config: ml_collections.ConfigDict) -> images_lib.Splits:
  out = folders.ensure_cache(
      images_dir(config.data_dir), config.cache_dir or None,
      image_size=config.image_size, channels=config.channels,
      split=chen_split, progress=bool(config.progress))
  return class_cache.config_splits(config, out, "cub")


def _check(config: ml_collections.ConfigDict) -> None:
  if not config.data_dir:
    raise registry.config_error("data_dir", config.data_dir,
                                f"the 'cub' dataset reads CUB-200-2011: {HOW}")


DATASET = class_cache.register(
    "cub", "CUB-200-2011 (Chen et al. 2019's 100/50/50 classes)", _load,
    (_check, class_cache.check_image_fields))
