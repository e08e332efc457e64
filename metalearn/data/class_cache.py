"""Train / val / test classes of unequal size in the verified cache.

The cache format of the ``folders`` and ``tfds_images`` datasets: one
``<split>.npz`` per split with ``images`` uint8 [N, S, S, ch] (class by
class), ``offsets`` and ``counts`` [C] int32, ``class_names`` str [C],
``paths`` str [N] (where each image came from) and ``source_fingerprint``
(what the cache was built from), plus the ``manifest.json`` of sha256s
(:mod:`metalearn.data.cache`). Also: fitting one image to the configured
size, the checks of those config fields, the splits a config can use
(classes too small for its episodes left out, with a warning), and
:func:`register` for a dataset of such a cache.
"""

from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence
import warnings

import ml_collections
import numpy as np

from metalearn.data import cache
from metalearn.data import images as images_lib
from metalearn.data import ragged
from metalearn.data import registry

SPLITS = ("train", "val", "test")
CACHE_FORMAT_VERSION = 1
FILE_NAMES = tuple(f"{s}.npz" for s in SPLITS)


class ClassSplit(NamedTuple):
  """One split, as written to the cache.

  Attributes:
    classes: uint8 images [N, S, S, ch] with offsets and counts.
    class_names: [C] str.
    paths: [N] str, where each image came from.
  """
  classes: ragged.RaggedClasses
  class_names: np.ndarray
  paths: np.ndarray


def fit_image(image, image_size: int, channels: int) -> np.ndarray:
  """A PIL image -> uint8 [image_size, image_size, channels]: converted to
  grayscale (1) or RGB (3), resized with Lanczos when its size differs."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = image.convert("L" if channels == 1 else "RGB")
  if image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
  return np.asarray(image, np.uint8).reshape(image_size, image_size, channels)


def write(cache_dir: Path, splits: Mapping[str, ClassSplit], *, source: str,
          fingerprint: str) -> None:
  """Writes the three splits and the manifest (temp files, then renames)."""
  files = {}
  for split in SPLITS:
    part = splits[split]
    files[f"{split}.npz"] = dict(
        images=np.asarray(part.classes.images, np.uint8),
        offsets=np.asarray(part.classes.offsets, np.int32),
        counts=np.asarray(part.classes.counts, np.int32),
        class_names=np.asarray(part.class_names, dtype=str).reshape(-1),
        paths=np.asarray(part.paths, dtype=str).reshape(-1),
        source_fingerprint=np.asarray(fingerprint))
  cache.write_files(Path(cache_dir), files, source=source,
                    format_version=CACHE_FORMAT_VERSION)


def stored_fingerprint(cache_dir: Path, what: str) -> str | None:
  """What the cache was built from, if every file verifies; else None
  (with a warning naming ``what`` when a file is damaged, not missing)."""
  problems = cache.problems(Path(cache_dir), FILE_NAMES,
                            format_version=CACHE_FORMAT_VERSION)
  damaged = {n: why for n, why in problems.items() if why != "missing"}
  if damaged:
    warnings.warn(f"{what} cache in {cache_dir} does not verify ({damaged}); "
                  "rebuilding it.", stacklevel=3)
  if problems:
    return None
  with np.load(Path(cache_dir) / FILE_NAMES[0], allow_pickle=False) as z:
    return str(z["source_fingerprint"])


def load_split(cache_dir: Path, split: str
              ) -> tuple[ragged.RaggedClasses, np.ndarray]:
  """One split of a verified cache: (classes, class names [C])."""
  path = Path(cache_dir) / f"{split}.npz"
  problem = cache.file_problem(path, cache.read_manifest(path.parent),
                               format_version=CACHE_FORMAT_VERSION)
  if problem is not None:
    raise cache.CacheError(f"cache file {path} is damaged ({problem}); "
                           f"delete {path.parent} to rebuild it.")
  images, offsets, counts, names = cache.read_npz(
      path, ("images", "offsets", "counts", "class_names"),
      format_version=CACHE_FORMAT_VERSION, rebuild=f"rm -r {path.parent}")
  return ragged.RaggedClasses(images, offsets, counts), names


def config_splits(config: ml_collections.ConfigDict, cache_dir: Path,
                  dataset: str) -> images_lib.Splits:
  """The cached splits, each without the classes too small for the
  config's episodes (``k_shot + n_query`` for train, ``k_shot +
  eval_n_query`` for val and test), which a warning names."""
  parts = []
  for split, field in zip(SPLITS, ("n_query", "eval_n_query",
                                   "eval_n_query")):
    classes, names = load_split(cache_dir, split)
    needed = config.k_shot + config[field]
    kept, dropped = ragged.at_least(classes, needed)
    if len(dropped):
      counts = np.asarray(classes.counts)
      listed = ", ".join(f"{names[i]} ({counts[i]})" for i in dropped[:5])
      warnings.warn(
          f"{dataset}: {len(dropped)} of {len(counts)} {split} classes have "
          f"fewer than {needed} images (k_shot + {field}) and are left out: "
          f"{listed}{', ...' * (len(dropped) > 5)}", stacklevel=2)
    parts.append(kept)
  return images_lib.Splits(*parts)


def check_image_fields(config: ml_collections.ConfigDict) -> None:
  """``config.image_size`` >= 1 and ``config.channels`` 1 or 3."""
  size, channels = config.image_size, config.channels
  if isinstance(size, bool) or not isinstance(size, int) or size < 1:
    raise registry.config_error("image_size", size,
                                "must be an integer >= 1 (pixels)")
  if channels not in (1, 3):
    raise registry.config_error("channels", channels,
                                "must be 1 (grayscale) or 3 (RGB)")


def check_fractions(config: ml_collections.ConfigDict) -> None:
  """``config.split_fractions``: (train, val, test) >= 0, summing to 1."""
  fractions = tuple(config.split_fractions)
  if (len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0
      or fractions[2] <= 0 or abs(sum(fractions) - 1) > 1e-6):
    raise registry.config_error(
        "split_fractions", fractions, "must be (train, val, test) fractions "
        ">= 0 summing to 1, train and test > 0")


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(config.image_size, config.image_size, config.channels)."""
  return (config.image_size, config.image_size, config.channels)


def register(name: str, description: str,
             load: Callable[[ml_collections.ConfigDict], images_lib.Splits],
             checks: Sequence[Callable[[ml_collections.ConfigDict], None]]
            ) -> registry.Dataset:
  """Registers an image dataset of this cache's format: images of
  :func:`image_shape`, classes of any size; ``checks`` run (before the
  image dataset's own) when the config is checked."""
  dataset = images_lib.image_dataset(name, description, load, image_shape,
                                     examples_per_class=None)

  def check(config: ml_collections.ConfigDict) -> None:
    for one in checks:
      one(config)
    dataset.check(config)
  return registry.register(dataset._replace(check=check))
