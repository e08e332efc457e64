"""Reading the two formats mini-ImageNet is distributed in (CSV lists of
image files, or pickles of arrays) into class-major uint8 arrays; see
:mod:`metalearn.data.miniimagenet` for the formats and the cache."""

import csv
from pathlib import Path
import pickle
from typing import Callable, Mapping, NamedTuple
import warnings

import numpy as np
from tqdm import tqdm

IMAGE_SIZE = 84
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
