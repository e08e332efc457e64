r"""Builds the Omniglot (or mini-ImageNet) cache once; later runs reuse it.

  python -m metalearn.data.prepare --omniglot_dir=../shared/data/omniglot \
      --cache_dir=~/.cache/metalearn/omniglot
  python -m metalearn.data.prepare --dataset=mini_imagenet \
      --data_dir=PATH/TO/mini_imagenet

Needs the ``data`` extra (TensorFlow, tensorflow-datasets) only when the cache
is missing, damaged or ``--overwrite`` is given. Sources, in order: a prepared
TFDS ``omniglot`` dataset ($TFDS_DATA_DIR or ``~/tensorflow_datasets``), the
zips ($METALEARN_OMNIGLOT_DIR, or ``<repo>/../shared/data/omniglot`` in the
checkout), TFDS's download ($METALEARN_OMNIGLOT_URL for a mirror). With
``--overwrite --omniglot_dir=DIR`` the cache is rebuilt from those zips only.
Cache: $METALEARN_CACHE_DIR or ``~/.cache/metalearn/omniglot``.

mini-ImageNet is converted from files the user already has in ``--data_dir``
($METALEARN_MINI_IMAGENET_DIR): the Ravi & Larochelle CSVs with ``images/``,
or the ``mini-imagenet-cache-<split>.pkl`` pickles (see
``metalearn.data.miniimagenet``); nothing is downloaded. Its cache goes to
``<--cache_dir>/mini_imagenet`` (default ``~/.cache/metalearn/mini_imagenet``).
"""

import os

from absl import app
from absl import flags

from metalearn.data import cache
from metalearn.data import miniimagenet
from metalearn.data.omniglot import access
from metalearn.data.omniglot import build
from metalearn.data.omniglot import sources
from metalearn.data.omniglot import splits
from metalearn.data.omniglot import store

_DATASET = flags.DEFINE_enum(
    "dataset", "omniglot", ["omniglot", "mini_imagenet"],
    "Which cache to build.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None,
    "mini-ImageNet only: dir holding train.csv, val.csv, test.csv and "
    "images/, or mini-imagenet-cache-{train,val,test}.pkl (default: "
    f"${miniimagenet.DATA_DIR_ENV}).")
_OMNIGLOT_DIR = flags.DEFINE_string(
    "omniglot_dir", None,
    "Dir holding images_background.zip, images_evaluation.zip, "
    "images_background_small1.zip and images_background_small2.zip "
    f"(default: ${sources.OMNIGLOT_DIR_ENV} or the checkout's shared dir).")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None,
    f"Cache dir (default: ${cache.CACHE_DIR_ENV} or "
    "~/.cache/metalearn/omniglot).")
_TFDS_DATA_DIR = flags.DEFINE_string(
    "tfds_data_dir", None,
    f"TFDS data dir searched for a prepared omniglot dataset (default: "
    f"${sources.TFDS_DATA_DIR_ENV} or ~/tensorflow_datasets).")
_DOWNLOAD_URL = flags.DEFINE_string(
    "download_url", None,
    f"Base URL of the four zips for the download (default: "
    f"${sources.OMNIGLOT_URL_ENV} or {sources.DEFAULT_URL}).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Rebuild the cache even if it verifies.")


def _build() -> str:
  """Builds, reuses or rebuilds the cache per the flags; returns its dir."""
  where = dict(progress=True, tfds_data_dir=_TFDS_DATA_DIR.value,
               download_url=_DOWNLOAD_URL.value)
  if _OVERWRITE.value and _OMNIGLOT_DIR.value:
    return build.build_cache(_OMNIGLOT_DIR.value, _CACHE_DIR.value,
                             progress=True)
  if _OVERWRITE.value:
    return build.rebuild_cache(None, _CACHE_DIR.value,
                               cache_problem="--overwrite", **where)
  reused = store.is_cache_complete(_CACHE_DIR.value)
  path = access.ensure_cache(_OMNIGLOT_DIR.value, _CACHE_DIR.value, **where)
  if reused:
    print("Reusing the existing cache (pass --overwrite to rebuild).")
  return path


def _prepare_mini_imagenet() -> None:
  """Builds or reuses the mini-ImageNet cache and prints its contents."""
  if _OVERWRITE.value:
    path = miniimagenet.build_cache(_DATA_DIR.value, _CACHE_DIR.value,
                                    progress=True, cache_problem="--overwrite")
  else:
    reused = not miniimagenet.verify_cache(_CACHE_DIR.value)
    path = miniimagenet.ensure_cache(_DATA_DIR.value, _CACHE_DIR.value,
                                     progress=True)
    if reused:
      print("Reusing the existing cache (pass --overwrite to rebuild).")
  print(f"mini-ImageNet cache: {path}")
  source = (cache.read_manifest(path) or {}).get("source", "?")
  print(f"  built from: {source}")
  for split in miniimagenet.SPLITS:
    images = miniimagenet.load_cached(split, path).images
    num_classes, num_images, height, width, channels = images.shape
    print(f"  {split:5s} {num_classes:3d} classes x {num_images} images, "
          f"{height}x{width}x{channels} (expected "
          f"{miniimagenet.NUM_CLASSES[split]} x "
          f"{miniimagenet.IMAGES_PER_CLASS})")


def main(argv):
  del argv
  if _DATASET.value == "mini_imagenet":
    _prepare_mini_imagenet()
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Quiet TF's C++ logs.
  path = _build()
  print(f"Omniglot cache: {path}")
  source = (cache.read_manifest(path) or {}).get("source", "?")
  print(f"  built from: {source}")
  for split in sources.TFDS_SPLITS:
    data = access.load_cached(split, path)
    num_classes, num_drawings, height, width = data.images.shape
    print(f"  {split:7s} {num_classes:4d} classes x {num_drawings} drawings, "
          f"{height}x{width}, {len(set(data.alphabets))} alphabets "
          f"({store.cache_path(split, path).name})")
  for name in splits.SPLIT_NAMES:
    sizes = "/".join(str(len(x)) for x in splits.load_splits(name, path))
    print(f"  split {name!r}: train/val/test classes = {sizes}")


if __name__ == "__main__":
  app.run(main)
