r"""Builds the Omniglot cache once; later runs reuse it.

  python -m metalearn.data.prepare --omniglot_dir=../shared/data/omniglot \
      --cache_dir=~/.cache/metalearn/omniglot

Needs the ``data`` extra (TensorFlow, tensorflow-datasets) only when the cache
is missing or ``--overwrite`` is given. Defaults: $METALEARN_OMNIGLOT_DIR or
``<repo>/../shared/data/omniglot``; $METALEARN_CACHE_DIR or
``~/.cache/metalearn/omniglot``.
"""

import os

from absl import app
from absl import flags

from metalearn.data import omniglot

_OMNIGLOT_DIR = flags.DEFINE_string(
    "omniglot_dir", None,
    "Dir holding images_background.zip, images_evaluation.zip, "
    "images_background_small1.zip and images_background_small2.zip "
    f"(default: ${omniglot.OMNIGLOT_DIR_ENV} or the repo's shared dir).")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None,
    f"Cache dir (default: ${omniglot.CACHE_DIR_ENV} or "
    "~/.cache/metalearn/omniglot).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Rebuild the cache even if it is complete.")


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Quiet TF's C++ logs.
  if _OVERWRITE.value:
    path = omniglot.build_cache(_OMNIGLOT_DIR.value, _CACHE_DIR.value,
                                progress=True)
  else:
    reused = omniglot.is_cache_complete(_CACHE_DIR.value)
    path = omniglot.ensure_cache(_OMNIGLOT_DIR.value, _CACHE_DIR.value,
                                 progress=True)
    if reused:
      print("Reusing the existing cache (pass --overwrite to rebuild).")
  print(f"Omniglot cache: {path}")
  for split in omniglot.TFDS_SPLITS:
    data = omniglot.load_cached(split, path)
    num_classes, num_drawings, height, width = data.images.shape
    print(f"  {split:7s} {num_classes:4d} classes x {num_drawings} drawings, "
          f"{height}x{width}, {len(set(data.alphabets))} alphabets "
          f"({omniglot.cache_path(split, path).name})")
  for name in omniglot.SPLIT_NAMES:
    sizes = "/".join(str(len(x)) for x in omniglot.load_splits(name, path))
    print(f"  split {name!r}: train/val/test classes = {sizes}")


if __name__ == "__main__":
  app.run(main)
