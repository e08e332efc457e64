"""The Omniglot numpy cache: paths, reading, self-verification, ``ensure_cache``.

The cache dir holds one ``<split>.npz`` per TFDS split (``images`` uint8
``[num_classes, 20, 28, 28]`` in {0, 1}, ink = 1, plus class metadata) and
``manifest.json`` with every file's sha256, recorded at build time. Reading
checks a file against the manifest (once per process per file version); a
damaged file is rebuilt from an available source with a warning, or refused.

Nothing here imports TensorFlow: building lives in ``omniglot_build`` and is
imported only when the cache must be (re)built.
"""

import importlib
import json
import os
from pathlib import Path
from typing import Mapping, NamedTuple
import uuid
import warnings
import zipfile
import zlib

import numpy as np

from metalearn.data import sources
# Re-exported: callers import these from here.
from metalearn.data.sources import KNOWN_SHA256  # pylint: disable=unused-import
from metalearn.data.sources import OMNIGLOT_DIR_ENV  # pylint: disable=unused-import
from metalearn.data.sources import TFDS_SPLITS
from metalearn.data.sources import ZIP_NAMES
from metalearn.data.sources import resolve_omniglot_dir  # pylint: disable=unused-import
from metalearn.data.sources import sha256_file
from metalearn.data.sources import shared_omniglot_dir  # pylint: disable=unused-import
from metalearn.data.sources import verify_zips  # pylint: disable=unused-import

CACHE_DIR_ENV = "METALEARN_CACHE_DIR"
MANIFEST_NAME = "manifest.json"
NUM_DRAWINGS = 20
IMAGE_SIZE = 28
# Threshold on the Lanczos-resampled ink coverage in [0, 1]. Over all 32,460
# drawings, 0.4 breaks a stroke in 2 (0.5: in 20) and loses none; strokes get
# about 15% more ink pixels than at 105x105. See docs/data.md.
INK_THRESHOLD = 0.4
CACHE_FORMAT_VERSION = 1
PREPARE_COMMAND = "python -m metalearn.data.prepare --overwrite"

# (resolved path, mtime_ns, size) -> sha256 of file versions already hashed.
_SHA256_SEEN: dict[tuple[str, int, int], str] = {}


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


class CacheError(ValueError):
  """A damaged cache file that could not be rebuilt."""


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  """The cache dir: the argument, else $METALEARN_CACHE_DIR, else
  ``~/.cache/metalearn/omniglot``."""
  if cache_dir is None:
    cache_dir = os.environ.get(CACHE_DIR_ENV) or "~/.cache/metalearn/omniglot"
  return Path(cache_dir).expanduser()


def cache_path(split: str, cache_dir: str | os.PathLike | None = None) -> Path:
  """Path of one split's ``.npz`` file."""
  if split not in ZIP_NAMES:
    raise ValueError(f"split={split!r} is not a TFDS Omniglot split; valid: "
                     f"{', '.join(TFDS_SPLITS)}")
  return resolve_cache_dir(cache_dir) / f"{split}.npz"


def file_sha256(path: Path) -> str:
  """sha256 of a file, hashed once per (path, mtime, size) in this process."""
  stat = path.stat()
  key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
  if key not in _SHA256_SEEN:
    _SHA256_SEEN[key] = sha256_file(path)
  return _SHA256_SEEN[key]


def read_manifest(cache_dir: Path) -> dict | None:
  """The cache's manifest, or None if it is missing or unreadable."""
  try:
    manifest = json.loads((cache_dir / MANIFEST_NAME).read_text())
  except (OSError, ValueError):
    return None
  return manifest if isinstance(manifest.get("files"), dict) else None


def _read_npz(path: Path) -> CachedSplit:
  """Reads every array (so zip CRCs are checked) of a current-format file."""
  with np.load(path, allow_pickle=False) as z:
    if int(z["format_version"]) != CACHE_FORMAT_VERSION:
      raise ValueError(
          f"{path} has cache format {int(z['format_version'])}, expected "
          f"{CACHE_FORMAT_VERSION}; rebuild it with `{PREPARE_COMMAND}`.")
    return CachedSplit(*(z[f] for f in CachedSplit._fields))


def file_problem(path: Path, manifest: Mapping | None) -> str | None:
  """Why ``path`` does not verify against the manifest, or None if it does."""
  if not path.is_file():
    return "missing"
  if manifest is None:
    return f"no readable {MANIFEST_NAME}"
  if manifest.get("format_version") != CACHE_FORMAT_VERSION:
    return (f"cache format {manifest.get('format_version')}, expected "
            f"{CACHE_FORMAT_VERSION}")
  entry = manifest["files"].get(path.name)
  if not isinstance(entry, dict) or "sha256" not in entry:
    return f"not listed in {MANIFEST_NAME}"
  sha = file_sha256(path)
  if sha != entry["sha256"]:
    return (f"sha256 {sha[:12]}... does not match {entry['sha256'][:12]}... "
            f"recorded in {MANIFEST_NAME}")
  return None


def _write_manifest(cache_dir: Path, names: list[str], source: str) -> None:
  manifest = {
      "format_version": CACHE_FORMAT_VERSION,
      "source": source,
      "files": {n: {"sha256": file_sha256(cache_dir / n),
                    "bytes": (cache_dir / n).stat().st_size} for n in names},
  }
  tmp = cache_dir / f".{MANIFEST_NAME}.{uuid.uuid4().hex}.tmp"
  try:
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, cache_dir / MANIFEST_NAME)
  finally:
    tmp.unlink(missing_ok=True)


def _adopt_unlisted(cache_dir: Path) -> bool:
  """Writes a manifest for a complete cache built before manifests existed.

  Every array of every file is read first, so the zip CRC-32s vouch for the
  bytes that the manifest then records. Returns whether it adopted the cache.
  """
  if read_manifest(cache_dir) is not None:
    return False
  try:
    for split in TFDS_SPLITS:
      _read_npz(cache_path(split, cache_dir))
    _write_manifest(cache_dir, [f"{s}.npz" for s in TFDS_SPLITS],
                    "adopted: files built before manifests, CRC-checked")
  except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile,
          zlib.error):
    return False
  return True


def verify_cache(cache_dir: str | os.PathLike | None = None
                ) -> dict[str, str]:
  """{file name: problem} of every cache file that does not verify.

  Empty means the cache is complete and every file matches its manifest
  sha256. Numpy and hashlib only: no TensorFlow.
  """
  cache_dir = resolve_cache_dir(cache_dir)
  paths = [cache_path(split, cache_dir) for split in TFDS_SPLITS]
  if all(p.is_file() for p in paths):
    _adopt_unlisted(cache_dir)
  manifest = read_manifest(cache_dir)
  problems = {p.name: file_problem(p, manifest) for p in paths}
  return {name: why for name, why in problems.items() if why is not None}


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
  cache_dir.mkdir(parents=True, exist_ok=True)
  tmp = {s: cache_dir / f".{s}.npz.{uuid.uuid4().hex}.tmp" for s in data}
  try:
    for split, arrays in data.items():
      with open(tmp[split], "wb") as f:
        np.savez_compressed(
            f, format_version=CACHE_FORMAT_VERSION, ink_threshold=INK_THRESHOLD,
            source_sha256=source_sha256.get(split, ""), **arrays._asdict())
    for split, path in tmp.items():
      os.replace(path, cache_path(split, cache_dir))
  finally:
    for path in tmp.values():
      path.unlink(missing_ok=True)
  _write_manifest(cache_dir, [f"{s}.npz" for s in data], source)


def _rebuild_damaged(path: Path, problem: str) -> None:
  """Rebuilds the cache holding a damaged file, or raises a one-line error."""
  build = importlib.import_module("metalearn.data.omniglot_build")
  try:
    build.rebuild_cache(cache_dir=path.parent)
  except sources.NoSourceError:
    raise CacheError(
        f"Omniglot cache file {path} is damaged ({problem}) and no source to "
        f"rebuild it was found; rebuild it with `{PREPARE_COMMAND}`.") from None
  source = (read_manifest(path.parent) or {}).get("source", "?")
  warnings.warn(f"Omniglot cache file {path} was damaged ({problem}); "
                f"rebuilt the cache from {source}.", stacklevel=3)


def load_cached(split: str, cache_dir: str | os.PathLike | None = None
               ) -> CachedSplit:
  """Reads one split from the cache after checking its sha256 (no TensorFlow).

  A file that does not match the manifest is rebuilt (with a warning) from
  the first available source, see ``ensure_cache``; without one it raises
  ``CacheError``.

  Args:
    split: one of ``TFDS_SPLITS`` ("train", "test", "small1", "small2").
    cache_dir: cache dir; see ``resolve_cache_dir``.

  Returns:
    The split's ``CachedSplit``; ``images`` is [C, 20, 28, 28] uint8.
  """
  path = cache_path(split, cache_dir)
  if not path.is_file():
    raise FileNotFoundError(
        f"No Omniglot cache file {path}. Build the cache once with "
        f"`python -m metalearn.data.prepare --omniglot_dir=DIR "
        f"--cache_dir={path.parent}` or `metalearn.data.ensure_cache()`.")
  _adopt_unlisted(path.parent)  # No-op once a manifest exists.
  problem = file_problem(path, read_manifest(path.parent))
  if problem is not None:
    _rebuild_damaged(path, problem)
  return _read_npz(path)


def ensure_cache(omniglot_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, *,
                 progress: bool = False,
                 tfds_data_dir: str | os.PathLike | None = None,
                 download_url: str | None = None,
                 tmp_dir: str | os.PathLike | None = None) -> Path:
  """Returns the cache dir, building the cache first if it does not verify.

  Sources, in order: (1) the existing cache if every file matches its
  manifest (never imports TensorFlow); (2) a prepared TFDS ``omniglot``
  dataset in ``tfds_data_dir``; (3) the four zips in ``omniglot_dir``; (4)
  TFDS's download from ``download_url``. See ``omniglot_build.rebuild_cache``
  and ``sources``; with none available it raises ``sources.NoSourceError``
  listing all four ways.

  Args:
    omniglot_dir: zip dir; see ``sources.resolve_omniglot_dir``.
    cache_dir: cache dir; see ``resolve_cache_dir``.
    progress: show tqdm progress bars while building.
    tfds_data_dir: TFDS data dir; see ``sources.resolve_tfds_data_dir``.
    download_url: base URL of the zips; see ``sources.resolve_download_url``.
    tmp_dir: parent of the temporary build dirs (default: system temp dir).

  Returns:
    The cache dir.
  """
  cache_dir = resolve_cache_dir(cache_dir)
  problems = verify_cache(cache_dir)
  if not problems:
    return cache_dir
  damaged = {n: why for n, why in problems.items() if why != "missing"}
  if damaged:
    warnings.warn(f"Omniglot cache in {cache_dir} does not verify ({damaged}); "
                  "rebuilding it.", stacklevel=2)
  build = importlib.import_module("metalearn.data.omniglot_build")
  return build.rebuild_cache(
      omniglot_dir, cache_dir, progress=progress, tfds_data_dir=tfds_data_dir,
      download_url=download_url, tmp_dir=tmp_dir,
      cache_problem="; ".join(f"{n} {why}" for n, why in problems.items()))


# Names that moved to other modules, still importable from here.
_MOVED = {
    "SPLIT_NAMES": "splits", "SPLIT_SIZES": "splits", "SPLIT_SEED": "splits",
    "Splits": "splits", "split_labels": "splits", "load_splits": "splits",
    "build_cache": "omniglot_build", "rebuild_cache": "omniglot_build",
}


def __getattr__(name: str):
  if name in _MOVED:
    module = importlib.import_module(f"metalearn.data.{_MOVED[name]}")
    return getattr(module, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
