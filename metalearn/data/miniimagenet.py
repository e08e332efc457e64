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

import csv
import os
from pathlib import Path
import pickle
from typing import Callable, Mapping, NamedTuple
import warnings

import ml_collections
import numpy as np
from tqdm import tqdm

from metalearn.data import cache
from metalearn.data import images as images_lib
from metalearn.data import registry

DATA_DIR_ENV = "METALEARN_MINI_IMAGENET_DIR"
CACHE_SUBDIR = "mini_imagenet"
SPLITS = ("train", "val", "test")
NUM_CLASSES = {"train": 64, "val": 16, "test": 20}  # Ravi & Larochelle.
IMAGES_PER_CLASS = 600
IMAGE_SIZE = 84
CACHE_FORMAT_VERSION = 1
# split -> pickle file names, in the order they are looked for.
PICKLE_NAMES = {s: (f"mini-imagenet-cache-{s}.pkl",
                    f"miniImageNet_category_split_{other}.pickle")
                for s, other in (("train", "train_phase_train"),
                                 ("val", "val"), ("test", "test"))}
PREPARE_COMMAND = ("python -m metalearn.data.prepare --dataset=mini_imagenet "
                   "--data_dir=DIR")
# The only globals a pickle of dicts, lists and numpy arrays needs.
_NUMPY_GLOBALS = ("_reconstruct", "scalar", "_frombuffer", "ndarray", "dtype")
_OTHER_GLOBALS = (("collections", "OrderedDict"), ("_codecs", "encode"))


class ClassImages(NamedTuple):
  """One split, class-major.

  Attributes:
    images: [C, D, 84, 84, 3] uint8 RGB in 0..255.
    class_names: [C] str, ascending (ImageNet wnids such as ``n01532829``).
  """
  images: np.ndarray
  class_names: np.ndarray


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


def _fit(images) -> np.ndarray:
  """Image paths or uint8 [N, H, W, 3] -> [N, 84, 84, 3] RGB (Lanczos)."""
  if isinstance(images, np.ndarray) and images.shape[1:3] == (IMAGE_SIZE,) * 2:
    return images
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = np.empty((len(images), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  for i, x in enumerate(images):
    with (Image.fromarray(x) if isinstance(x, np.ndarray)
          else Image.open(x)) as image:
      image = image.convert("RGB")
      if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE,) * 2, Image.Resampling.LANCZOS)
      out[i] = np.asarray(image, np.uint8)
  return out


def _class_major(split: str, groups: Mapping[str, list],
                 read: Callable[[list], np.ndarray]) -> ClassImages:
  """Classes sorted by name, each cut to the smallest class's image count."""
  if not groups:
    raise ValueError(f"mini-ImageNet split {split!r} has no classes")
  names = sorted(groups)
  counts = [len(groups[n]) for n in names]
  count = min(counts)
  if max(counts) != count:
    warnings.warn(f"mini-ImageNet {split}: classes have {count} to "
                  f"{max(counts)} images; keeping the first {count} of each "
                  "so the array is rectangular.", stacklevel=3)
  images = np.empty((len(names), count, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  for c, name in enumerate(names):
    images[c] = read(groups[name][:count])
  return ClassImages(images, np.asarray(names, dtype=str))


def read_csv_split(split: str, data_dir: Path, *, progress: bool = False
                  ) -> ClassImages:
  """Reads ``<data_dir>/<split>.csv`` and the images it lists."""
  csv_path = data_dir / f"{split}.csv"
  with open(csv_path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    if not {"filename", "label"} <= set(reader.fieldnames or ()):
      raise ValueError(f"{csv_path} must have the header `filename,label`; "
                       f"got {reader.fieldnames}")
    rows = list(reader)
  groups: dict[str, list[Path]] = {}
  for row in rows:
    name, label = row["filename"], row["label"]
    path = data_dir / "images" / name
    if not path.is_file():
      path = data_dir / "images" / label / name
    if not path.is_file():
      raise FileNotFoundError(f"{csv_path} lists {name}, but neither "
                              f"images/{name} nor images/{label}/{name} "
                              f"exists in {data_dir}")
    groups.setdefault(label, []).append(path)
  with tqdm(total=len(rows), desc=split, unit="img", disable=not progress,
            leave=False) as bar:
    def read(paths: list[Path]) -> np.ndarray:
      images = _fit(paths)
      bar.update(len(paths))
      return images
    return _class_major(split, groups, read)


class UnsafePickleError(pickle.UnpicklingError, ValueError):
  """A pickle that needs more than dicts, lists and numpy arrays: refused."""


class _ArrayUnpickler(pickle.Unpickler):
  """Builds dicts, lists and numpy arrays only: no other code runs."""

  def __init__(self, file, path: Path):
    super().__init__(file, encoding="latin1")
    self._path = path

  def find_class(self, module, name):
    if ((module.split(".")[0] == "numpy" and name in _NUMPY_GLOBALS)
        or (module, name) in _OTHER_GLOBALS):
      return super().find_class(module, name)
    raise UnsafePickleError(
        f"{self._path}: refusing to unpickle {module}.{name}, which is not a "
        "numpy array type (only dicts, lists and numpy arrays are read).")


def read_pickle_split(split: str, path: Path) -> ClassImages:
  """Reads one split pickle (``image_data``/``class_dict`` or
  ``data``/``labels``).

  Raises:
    UnsafePickleError: (a ValueError) the pickle holds objects other than
      dicts, lists and numpy arrays; the one-line message names the file.
  """
  with open(path, "rb") as f:
    obj = _ArrayUnpickler(f, path).load()
  if isinstance(obj, dict) and {"image_data", "class_dict"} <= set(obj):
    data = np.asarray(obj["image_data"])
    groups = {str(k): [int(i) for i in v] for k, v in obj["class_dict"].items()}
  elif isinstance(obj, dict) and {"data", "labels"} <= set(obj):
    data = np.asarray(obj["data"])
    names = {int(v): str(k) for k, v in obj.get("catname2label", {}).items()}
    groups = {}
    for i, label in enumerate(np.asarray(obj["labels"]).tolist()):
      groups.setdefault(names.get(int(label), f"{int(label):06d}"),
                        []).append(i)
  else:
    keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"{path} is not a mini-ImageNet pickle: expected keys "
                     f"image_data and class_dict, or data and labels; got "
                     f"{keys}")
  if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
    raise ValueError(f"{path}: images must be uint8 [N, H, W, 3]; got "
                     f"{data.dtype} {data.shape}")
  return _class_major(split, groups, lambda rows: _fit(data[np.asarray(rows)]))


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
