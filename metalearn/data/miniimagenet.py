"""mini-ImageNet from files the user already has, into a uint8 numpy cache.

mini-ImageNet (Ravi & Larochelle 2017's split): 64 train / 16 val / 20 test
ImageNet classes of 600 RGB 84x84 images. metalearn never downloads or ships
them (ImageNet terms of access); ``ensure_cache`` converts files the user has
in the data dir (``data_dir``, else $METALEARN_MINI_IMAGENET_DIR), in either
format the field distributes (docs/data.md):

* CSV: ``train.csv``, ``val.csv``, ``test.csv`` (header ``filename,label``)
  and the images in ``images/<filename>`` (or ``images/<label>/<filename>``),
  JPEG or PNG, resized to 84x84 (Lanczos) when they are another size.
* Pickles (``PICKLE_NAMES``): dicts with ``image_data`` uint8 [N, 84, 84, 3]
  and ``class_dict`` {class name: [row indices]}, or ``data`` and ``labels``
  [N] (and optionally ``catname2label``); only numpy arrays are unpickled.

The cache, ``<cache_dir>/mini_imagenet/``, holds one uncompressed
``<split>.npz`` per split (``images`` uint8 [C, D, 84, 84, 3], class-major,
classes sorted by name, images in file order; ``class_names`` str [C]) and
``manifest.json`` with every file's sha256 (:mod:`metalearn.data.cache`).

Registered as the dataset ``mini_imagenet`` (``config.data_dir``,
``config.cache_dir``).
"""

import os
from pathlib import Path
from typing import Mapping
import warnings

import ml_collections

from metalearn.data import cache
from metalearn.data import images as images_lib
from metalearn.data import registry
from metalearn.data.miniimagenet_files import IMAGE_SIZE
from metalearn.data.miniimagenet_files import ClassImages
# Raised by read_pickle_split; docs/data.md names it here.
from metalearn.data.miniimagenet_files import UnsafePickleError  # noqa: F401
from metalearn.data.miniimagenet_files import read_csv_split
from metalearn.data.miniimagenet_files import read_pickle_split

DATA_DIR_ENV = "METALEARN_MINI_IMAGENET_DIR"
CACHE_SUBDIR = "mini_imagenet"
SPLITS = ("train", "val", "test")
NUM_CLASSES = {"train": 64, "val": 16, "test": 20}  # Ravi & Larochelle.
IMAGES_PER_CLASS = 600
CACHE_FORMAT_VERSION = 1
# split -> pickle file names, in the order they are looked for.
PICKLE_NAMES = {s: (f"mini-imagenet-cache-{s}.pkl",
                    f"miniImageNet_category_split_{other}.pickle")
                for s, other in (("train", "train_phase_train"),
                                 ("val", "val"), ("test", "test"))}
PREPARE_COMMAND = ("python -m metalearn.data.prepare --dataset=mini_imagenet "
                   "--data_dir=DIR")
def resolve_data_dir(data_dir: str | os.PathLike | None = None
                    ) -> Path | None:
  """The dir of the user's files: the argument, else
  $METALEARN_MINI_IMAGENET_DIR, else None."""
  data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
  return None if data_dir is None else Path(data_dir).expanduser()


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  """``<root>/mini_imagenet``; root is the argument, else
  $METALEARN_CACHE_DIR, else ``~/.cache/metalearn``.

  A dir already named ``mini_imagenet`` is used as is, so the dir that
  ``ensure_cache`` returns can be passed back.
  """
  if cache_dir is None:
    cache_dir = os.environ.get(cache.CACHE_DIR_ENV) or "~/.cache/metalearn"
  path = Path(cache_dir).expanduser()
  return path if path.name == CACHE_SUBDIR else path / CACHE_SUBDIR


def cache_path(split: str, cache_dir: str | os.PathLike | None = None) -> Path:
  """Path of one split's ``.npz`` file."""
  if split not in SPLITS:
    raise ValueError(f"split={split!r} is not a mini-ImageNet split; valid: "
                     f"{', '.join(SPLITS)}")
  return resolve_cache_dir(cache_dir) / f"{split}.npz"


def _missing_csv(data_dir: Path) -> list[str]:
  """The CSV format's files that ``data_dir`` lacks."""
  return [n for n in (*(f"{s}.csv" for s in SPLITS), "images/")
          if not (data_dir / n).exists()]


def _find_pickles(data_dir: Path) -> dict[str, Path | None]:
  """{split: its pickle in ``data_dir``, or None}."""
  return {s: next((data_dir / n for n in names if (data_dir / n).is_file()),
                  None) for s, names in PICKLE_NAMES.items()}


def _no_source_error(data_dir: Path | None, why: str) -> cache.NoSourceError:
  looked = ("no data dir was given (pass data_dir / --data_dir or set "
            f"${DATA_DIR_ENV})")
  if data_dir is not None:
    pickles = _find_pickles(data_dir)
    looked = (f"looked in {data_dir} for (a) the CSV split: train.csv, "
              f"val.csv, test.csv and images/<filename> (missing: "
              f"{', '.join(_missing_csv(data_dir))}); (b) the pickles "
              f"mini-imagenet-cache-<split>.pkl or "
              f"miniImageNet_category_split_<split>.pickle (split train_phase"
              f"_train for train; missing for: "
              f"{', '.join(s for s, p in pickles.items() if p is None)})")
  return cache.NoSourceError(
      f"No mini-ImageNet cache ({why}) and no files to build it from: "
      f"{looked}. metalearn never downloads ImageNet images (ImageNet terms "
      f"of access): put either format, obtained under those terms, in one "
      f"dir and run `{PREPARE_COMMAND}` (or set ${DATA_DIR_ENV}=DIR).")


def write_cache(data: Mapping[str, ClassImages], cache_dir: Path, *,
                source: str) -> None:
  """Writes every split (temp files, then renames) and the manifest."""
  cache.write_files(cache_dir, {f"{s}.npz": x._asdict()
                                for s, x in data.items()},
                    source=source, format_version=CACHE_FORMAT_VERSION)


def verify_cache(cache_dir: str | os.PathLike | None = None) -> dict[str, str]:
  """{file name: problem} of every cache file that does not verify."""
  return cache.problems(resolve_cache_dir(cache_dir),
                        [f"{s}.npz" for s in SPLITS],
                        format_version=CACHE_FORMAT_VERSION)


def build_cache(data_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, *,
                progress: bool = False, cache_problem: str = "not built"
               ) -> Path:
  """Converts the user's files (CSV first, else pickles) into the cache.

  Args:
    data_dir: dir of the user's files; see ``resolve_data_dir``.
    cache_dir: cache root or dir; see ``resolve_cache_dir``.
    progress: show a tqdm bar per split while decoding images.
    cache_problem: why the cache is being built (for the error message).

  Returns:
    The cache dir. Raises ``metalearn.data.NoSourceError`` (a
    FileNotFoundError)
    naming the files looked for when neither format is complete.
  """
  data_dir, cache_dir = resolve_data_dir(data_dir), resolve_cache_dir(cache_dir)
  pickles = _find_pickles(data_dir) if data_dir else {}
  if data_dir is not None and not _missing_csv(data_dir):
    data = {s: read_csv_split(s, data_dir, progress=progress) for s in SPLITS}
    source = f"CSV split files and images in {data_dir}"
  elif data_dir is not None and all(pickles.values()):
    data = {s: read_pickle_split(s, p) for s, p in pickles.items()}
    names = ", ".join(p.name for p in pickles.values())
    source = f"pickles {names} in {data_dir}"
  else:
    raise _no_source_error(data_dir, cache_problem)
  write_cache(data, cache_dir, source=source)
  return cache_dir


def ensure_cache(data_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, *,
                 progress: bool = False) -> Path:
  """Returns the cache dir, building it from the user's files if needed.

  An existing cache whose files all match the manifest is used as is (the
  data dir is not needed then); otherwise ``build_cache`` runs.

  Args:
    data_dir, cache_dir, progress: as in ``build_cache``.

  Returns:
    The cache dir, ``<root>/mini_imagenet``.
  """
  cache_dir = resolve_cache_dir(cache_dir)
  problems = verify_cache(cache_dir)
  if not problems:
    return cache_dir
  damaged = {n: why for n, why in problems.items() if why != "missing"}
  if damaged:
    warnings.warn(f"mini-ImageNet cache in {cache_dir} does not verify "
                  f"({damaged}); rebuilding it.", stacklevel=2)
  return build_cache(data_dir, cache_dir, progress=progress,
                     cache_problem="; ".join(f"{cache_dir / n} {why}"
                                             for n, why in problems.items()))


def load_cached(split: str, cache_dir: str | os.PathLike | None = None
               ) -> ClassImages:
  """One split ("train", "val" or "test") of the cache in ``cache_dir``
  (see ``resolve_cache_dir``), after checking its sha256 against the
  manifest; images are uint8 [C, D, 84, 84, 3]."""
  path = cache_path(split, cache_dir)
  if not path.is_file():
    raise FileNotFoundError(
        f"No mini-ImageNet cache file {path}. Build the cache once with "
        f"`{PREPARE_COMMAND} --cache_dir={path.parent}` or "
        f"`metalearn.data.miniimagenet.ensure_cache(DIR)`.")
  problem = cache.file_problem(path, cache.read_manifest(path.parent),
                               format_version=CACHE_FORMAT_VERSION)
  if problem is not None:
    raise cache.CacheError(
        f"mini-ImageNet cache file {path} is damaged ({problem}); rebuild it "
        f"with `{PREPARE_COMMAND} --overwrite`.")
  return ClassImages(*cache.read_npz(
      path, ClassImages._fields, format_version=CACHE_FORMAT_VERSION,
      rebuild=f"{PREPARE_COMMAND} --overwrite"))


def load_splits(cache_dir: str | os.PathLike | None = None
               ) -> images_lib.Splits:
  """The Ravi & Larochelle train / val / test classes from the cache.

  Every class of a split has the same number of images D: the smallest
  count among that split's classes in the source files (600 for the
  standard files).

  Args:
    cache_dir: cache root or dir; see ``resolve_cache_dir``.

  Returns:
    ``Splits`` of uint8 image arrays [C, D, 84, 84, 3] (C = 64 / 16 / 20).
  """
  return images_lib.Splits(*(load_cached(s, cache_dir).images
                             for s in SPLITS))


def _load_config(config: ml_collections.ConfigDict) -> images_lib.Splits:
  """The splits of ``config.cache_dir``, built from ``config.data_dir`` (""
  for $METALEARN_MINI_IMAGENET_DIR) if needed."""
  return load_splits(ensure_cache(config.data_dir or None,
                                  config.cache_dir or None, progress=True))


DATASET = registry.register(images_lib.image_dataset(
    "mini_imagenet", "mini-ImageNet (Ravi & Larochelle split)", _load_config,
    input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
    examples_per_class=IMAGES_PER_CLASS))
