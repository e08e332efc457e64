"""Any tree of class folders, into the verified uint8 cache.

A class is a folder that holds image files directly, at any depth below the
root: ``ROOT/<class>/*.png``, or Omniglot's ``ROOT/<alphabet>/<character>/
*.png`` where each character folder is a class (named
``alphabet/character``). Any format Pillow opens, any size: every image is
converted to grayscale (``channels=1``) or RGB (``channels=3``) and resized
to ``image_size`` x ``image_size`` (Lanczos; the aspect ratio is not kept).
Classes may hold different numbers of images: they are stored flat
(:class:`~metalearn.data.ragged.RaggedClasses`), nothing is cut.

The split into train / val / test classes is, in this order:

* a dataset's published split, when its module passes ``split`` (a
  function of the sorted class names; CUB-200-2011's in
  :mod:`metalearn.data.cub`);
* the tree's own, when ``ROOT/train/`` and ``ROOT/test/`` exist (and
  ``ROOT/val/``, else no validation classes);
* otherwise a fixed split of all classes by ``split_fractions`` (train, val,
  test): classes ordered by ``sha256("folders/0/<class name>")``, so it
  depends only on the class names, never on numpy or ``config.seed``.

The cache, ``<cache root>/folders/<root name>-<hash of root and
settings>/``, is in :mod:`metalearn.data.class_cache`'s format (``paths``
relative to the root). It is built once, with a progress bar, and
rebuilt when the files change: the fingerprint is a sha256 of every image's
path, size and modification time, and of the settings.

Registered as the dataset ``folders`` (``config.data_dir`` the root,
``config.image_size``, ``config.channels``, ``config.split_fractions``,
``config.cache_dir``). Pixels reach the model in [0, 1], with the files'
own grey levels: Omniglot's PNG tree read this way has white paper (1.0)
and dark ink, where the built-in Omniglot cache binarises the ink to 1
(docs/data.md, "Omniglot as a folder tree", states the difference).
"""

import hashlib
import os
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import ml_collections
import numpy as np
from tqdm import tqdm

from metalearn.data import cache
from metalearn.data import class_cache
from metalearn.data import images as images_lib
from metalearn.data import ragged
from metalearn.data import registry

CACHE_SUBDIR = "folders"
SPLITS = class_cache.SPLITS
SPLIT_SEED = 0
# sorted class names -> {"train"/"val"/"test": class names}.
SplitFn = Callable[[Sequence[str]], dict]
HOW = ("put one folder per class under ROOT (images in ROOT/<class>/, at any "
       "depth: ROOT/<alphabet>/<character>/*.png makes each character a "
       "class; any format Pillow reads), optionally split into ROOT/train/, "
       "ROOT/val/, ROOT/test/ (else config.split_fractions splits the "
       "classes), and set --config.data_dir=ROOT")


class Tree(NamedTuple):
  """The image files of each split's classes, and their fingerprint.

  Attributes:
    classes: {split: {class name: [image paths, sorted]}}.
    fingerprint: sha256 of every path, size and mtime, and the settings.
  """
  classes: dict
  fingerprint: str


def image_suffixes() -> frozenset:
  """File suffixes Pillow can open (lower case, with the dot)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.init()
  return frozenset(ext for ext, fmt in Image.registered_extensions().items()
                   if fmt in Image.OPEN)


def class_folders(root: Path) -> dict[str, list[Path]]:
  """{class name (path below ``root``, '/'-separated): its image files}."""
  suffixes, found = image_suffixes(), {}
  for folder, dirs, files in os.walk(root, followlinks=True):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    paths = sorted(Path(folder) / f for f in files if not f.startswith(".")
                   and Path(f).suffix.lower() in suffixes)
    if paths:
      found[Path(folder).relative_to(root).as_posix()] = paths
  return found


def split_by_fractions(names: Sequence[str], fractions: Sequence[float]
                      ) -> dict[str, list[str]]:
  """{split: class names}: names ordered by their salted sha256, then cut."""
  order = sorted(names, key=lambda n: hashlib.sha256(
      f"folders/{SPLIT_SEED}/{n}".encode()).hexdigest())
  n_train = int(round(fractions[0] * len(order)))
  n_val = int(round(fractions[1] * len(order)))
  cuts = (0, n_train, n_train + n_val, len(order))
  return {s: sorted(order[cuts[i]:cuts[i + 1]]) for i, s in enumerate(SPLITS)}


def scan(root: str | os.PathLike, *, image_size: int, channels: int,
         split_fractions: Sequence[float], field: str = "data_dir",
         split: Optional[SplitFn] = None) -> Tree:
  """The classes of each split under ``root`` and their fingerprint.

  ``split``, when given, assigns every class folder under ``root`` (sorted
  names) to a split, instead of ``train/`` ``test/`` dirs or
  ``split_fractions``.

  Raises:
    ValueError: naming ``config.<field>`` when ``root`` is missing or holds
      no class folder, and saying what to put where.
  """
  root = Path(root).expanduser()
  if not root.is_dir():
    raise registry.config_error(field, str(root), f"it is not a directory; "
                                f"the 'folders' dataset needs one: {HOW}")
  if split is not None:
    every = class_folders(root)
    parts = split(sorted(every))
    classes = {s: {n: every[n] for n in parts[s]} for s in SPLITS}
    how = f"split {split.__name__}"
  elif (root / "train").is_dir() and (root / "test").is_dir():
    classes = {s: class_folders(root / s) if (root / s).is_dir() else {}
               for s in SPLITS}
    how = "dirs"
  else:
    every = class_folders(root)
    parts = split_by_fractions(list(every), split_fractions)
    classes = {s: {n: every[n] for n in parts[s]} for s in SPLITS}
    how = f"fractions {tuple(float(f) for f in split_fractions)}"
  if not classes["train"]:
    raise registry.config_error(
        field, str(root), f"no class folder with images was found there "
        f"(for the train split); {HOW}")
  digest = hashlib.sha256(f"{class_cache.CACHE_FORMAT_VERSION} "
                          f"{image_size} {channels} {how}\n".encode())
  for split, per_class in classes.items():
    for name, paths in per_class.items():
      for path in paths:
        stat = path.stat()
        digest.update(f"{split}\t{name}\t{path.relative_to(root).as_posix()}"
                      f"\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
  return Tree(classes, digest.hexdigest())


def read_image(path: str | os.PathLike, image_size: int, channels: int
              ) -> np.ndarray:
  """One image file -> uint8 [image_size, image_size, channels]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    return class_cache.fit_image(image, image_size, channels)


def resolve_cache_dir(root: Path, cache_dir: str | os.PathLike | None, *,
                      image_size: int, channels: int,
                      split_fractions: Sequence[float],
                      split: Optional[SplitFn] = None) -> Path:
  """``<cache root>/folders/<root name>-<12 hex of root and settings>``;
  cache root: ``cache_dir``, else $METALEARN_CACHE_DIR, else
  ``~/.cache/metalearn``."""
  base = Path(cache_dir or os.environ.get(cache.CACHE_DIR_ENV)
              or "~/.cache/metalearn").expanduser()
  key = hashlib.sha256(
      f"{root.expanduser().resolve()} {image_size} {channels} "
      f"{tuple(split_fractions)}{' ' + split.__name__ if split else ''}"
      .encode())
  name = "".join(c if c.isalnum() or c in "-_" else "_" for c in root.name)
  return base / CACHE_SUBDIR / f"{name or 'root'}-{key.hexdigest()[:12]}"


def build(root: Path, tree: Tree, cache_dir: Path, *, image_size: int,
          channels: int, progress: bool = True) -> None:
  """Decodes every image of ``tree`` and writes the cache."""
  total = sum(len(p) for c in tree.classes.values() for p in c.values())
  splits = {}
  with tqdm(total=total, desc=f"folders: decoding {root.name}", unit="img",
            disable=not progress) as bar:
    for split, per_class in tree.classes.items():
      names = sorted(per_class)
      paths = [p for n in names for p in per_class[n]]
      images = np.empty((len(paths), image_size, image_size, channels),
                        np.uint8)
      for i, path in enumerate(paths):
        images[i] = read_image(path, image_size, channels)
        bar.update()
      counts = np.asarray([len(per_class[n]) for n in names], np.int32)
      offsets = (np.cumsum(counts) - counts).astype(np.int32)
      splits[split] = class_cache.ClassSplit(
          ragged.RaggedClasses(images, offsets, counts), np.asarray(names),
          np.asarray([p.relative_to(root).as_posix() for p in paths]))
  class_cache.write(cache_dir, splits, source=f"class folders in {root}",
                    fingerprint=tree.fingerprint)


def ensure_cache(root: str | os.PathLike, cache_dir=None, *,
                 image_size: int, channels: int,
                 split_fractions: Sequence[float] = (0.64, 0.16, 0.2),
                 split: Optional[SplitFn] = None,
                 progress: bool = True) -> Path:
  """The cache dir of ``root``, (re)built when missing, damaged or stale.

  Args:
    root: the tree of class folders.
    cache_dir: cache root; see ``resolve_cache_dir``.
    image_size, channels: every image becomes uint8 [S, S, channels].
    split_fractions: (train, val, test) when ``root`` has no ``train/`` and
      ``test/`` folders.
    split: a dataset's own split of the sorted class names (see ``scan``).
    progress: a tqdm bar while decoding.

  Returns:
    The cache dir (read it with :func:`load_split`).
  """
  root = Path(root).expanduser()
  settings = dict(image_size=image_size, channels=channels)
  tree = scan(root, split_fractions=split_fractions, split=split, **settings)
  out = resolve_cache_dir(root, cache_dir, split_fractions=split_fractions,
                          split=split, **settings)
  if class_cache.stored_fingerprint(out, "folders") != tree.fingerprint:
    build(root, tree, out, progress=progress, **settings)
  return out


load_split = class_cache.load_split


def _load_config(config: ml_collections.ConfigDict) -> images_lib.Splits:
  out = ensure_cache(config.data_dir, config.cache_dir or None,
                     image_size=config.image_size, channels=config.channels,
                     split_fractions=tuple(config.split_fractions),
                     progress=bool(config.progress))
  return class_cache.config_splits(config, out, "folders")


def _check(config: ml_collections.ConfigDict) -> None:
  if not config.data_dir:
    raise registry.config_error(
        "data_dir", config.data_dir, f"the 'folders' dataset reads a tree of "
        f"class folders: {HOW}")


DATASET = class_cache.register(
    "folders", "class folders (config.data_dir)", _load_config,
    (_check, class_cache.check_image_fields, class_cache.check_fractions))
