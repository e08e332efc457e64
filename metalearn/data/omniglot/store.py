"""The Omniglot numpy cache on disk: paths, format, reading, verifying, writing.

The cache dir holds one ``<split>.npz`` per TFDS split (``images`` uint8
``[num_classes, 20, 28, 28]`` in {0, 1}, ink = 1, plus class metadata) and
``manifest.json`` with every file's sha256 (:mod:`metalearn.data.cache`),
recorded at build time. Numpy and hashlib only: building lives in
:mod:`metalearn.data.omniglot.build`, and :mod:`metalearn.data.omniglot.access`
(above both) rebuilds a cache that does not verify.
"""

import os
from pathlib import Path
from typing import Mapping, NamedTuple
import zipfile
import zlib

import numpy as np

from metalearn.data import cache
from metalearn.data.omniglot import sources

NUM_DRAWINGS = 20
IMAGE_SIZE = 28
# Threshold on the Lanczos-resampled ink coverage in [0, 1]. Over all 32,460
# drawings, 0.4 breaks a stroke in 2 (0.5: in 20) and loses none; strokes get
# about 15% more ink pixels than at 105x105. See docs/data.md.
INK_THRESHOLD = 0.4
CACHE_FORMAT_VERSION = 1
PREPARE_COMMAND = "python -m metalearn.data.prepare --overwrite"
FILE_NAMES = tuple(f"{s}.npz" for s in sources.TFDS_SPLITS)


class CachedSplit(NamedTuple):
  """One TFDS split as stored in the cache, classes sorted by label.

  Attributes:
    images: [C, 20, 28, 28] uint8 in {0, 1}, ink = 1.
    labels: [C] int32 TFDS label (0..963 background, 964..1622 evaluation).
    alphabets: [C] str alphabet name.
    characters: [C] int32 index of the character within its alphabet (TFDS
      ``alphabet_char_id``; 0-based, folder ``characterNN`` is ``NN - 1``).
    ink_105: [C, 20] float32 ink fraction of each 105x105 original (checks).
  """
  images: np.ndarray
  labels: np.ndarray
  alphabets: np.ndarray
  characters: np.ndarray
  ink_105: np.ndarray


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  """The cache dir: the argument, else $METALEARN_CACHE_DIR, else
  ``~/.cache/metalearn/omniglot``."""
  if cache_dir is None:
    cache_dir = (os.environ.get(cache.CACHE_DIR_ENV)
                 or "~/.cache/metalearn/omniglot")
  return Path(cache_dir).expanduser()


def cache_path(split: str, cache_dir: str | os.PathLike | None = None) -> Path:
  """Path of one split's ``.npz`` file."""
  if split not in sources.ZIP_NAMES:
    raise ValueError(f"split={split!r} is not a TFDS Omniglot split; valid: "
                     f"{', '.join(sources.TFDS_SPLITS)}")
  return resolve_cache_dir(cache_dir) / f"{split}.npz"


def read_npz(path: Path) -> CachedSplit:
  """Reads every array (so zip CRCs are checked) of a current-format file."""
  return CachedSplit(*cache.read_npz(path, CachedSplit._fields,
                                     format_version=CACHE_FORMAT_VERSION,
                                     rebuild=PREPARE_COMMAND))


def file_problem(path: Path) -> str | None:
  """Why one cache file does not verify against its manifest, or None."""
  return cache.file_problem(path, cache.read_manifest(path.parent),
                            format_version=CACHE_FORMAT_VERSION)


def adopt_unlisted(cache_dir: Path) -> bool:
  """Writes a manifest for a complete cache built before manifests existed.

  Every array of every file is read first, so the zip CRC-32s vouch for the
  bytes that the manifest then records. Returns whether it adopted the cache.
  """
  if cache.read_manifest(cache_dir) is not None:
    return False
  try:
    for split in sources.TFDS_SPLITS:
      read_npz(cache_path(split, cache_dir))
    cache.write_manifest(cache_dir, FILE_NAMES,
                         "adopted: files built before manifests, CRC-checked",
                         format_version=CACHE_FORMAT_VERSION)
  except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile,
          zlib.error):
    return False
  return True


def verify_cache(cache_dir: str | os.PathLike | None = None
                ) -> dict[str, str]:
  """{file name: problem} of every cache file that does not verify.

  Empty means the cache is complete and every file matches its manifest
  sha256. A complete cache without a manifest is adopted first
  (``adopt_unlisted``). Numpy and hashlib only: no TensorFlow.
  """
  cache_dir = resolve_cache_dir(cache_dir)
  if all((cache_dir / n).is_file() for n in FILE_NAMES):
    adopt_unlisted(cache_dir)
  return cache.problems(cache_dir, FILE_NAMES,
                        format_version=CACHE_FORMAT_VERSION)


def is_cache_complete(cache_dir: str | os.PathLike | None = None) -> bool:
  """Whether all four split files exist and match the manifest."""
  return not verify_cache(cache_dir)


def write_cache(data: Mapping[str, CachedSplit], cache_dir: Path, *,
                source: str, source_sha256: Mapping[str, str]) -> None:
  """Writes every split and the manifest: temp files, then renames.

  Args:
    data: {TFDS split: CachedSplit} for all four splits.
    cache_dir: the cache dir (created if needed).
    source: where the data came from (recorded in the manifest).
    source_sha256: {TFDS split: sha256 of its source zip, or ""}.
  """
  files = {f"{split}.npz": dict(ink_threshold=INK_THRESHOLD,
                                source_sha256=source_sha256.get(split, ""),
                                **arrays._asdict())
           for split, arrays in data.items()}
  cache.write_files(cache_dir, files, source=source,
                    format_version=CACHE_FORMAT_VERSION, compress=True)
