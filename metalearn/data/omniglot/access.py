"""Using the Omniglot cache: reuse it when it verifies, rebuild it when not.

Sits above the read side (:mod:`~metalearn.data.omniglot.store`) and the
builder (:mod:`~metalearn.data.omniglot.build`). Reading checks a file
against the manifest (once per process per file version); a damaged file is
rebuilt from an available source with a warning, or refused. TensorFlow is
imported only when a cache is (re)built.
"""

import os
from pathlib import Path
import warnings

from metalearn.data import cache
from metalearn.data.omniglot import build
from metalearn.data.omniglot import store


def _rebuild_damaged(path: Path, problem: str) -> None:
  """Rebuilds the cache holding a damaged file, or raises a one-line error."""
  try:
    build.rebuild_cache(cache_dir=path.parent)
  except cache.NoSourceError:
    raise cache.CacheError(
        f"Omniglot cache file {path} is damaged ({problem}) and no source to "
        f"rebuild it was found; rebuild it with "
        f"`{store.PREPARE_COMMAND}`.") from None
  source = (cache.read_manifest(path.parent) or {}).get("source", "?")
  warnings.warn(f"Omniglot cache file {path} was damaged ({problem}); "
                f"rebuilt the cache from {source}.", stacklevel=3)


def load_cached(split: str, cache_dir: str | os.PathLike | None = None
               ) -> store.CachedSplit:
  """Reads one split from the cache after checking its sha256 (no TensorFlow).

  A file that does not match the manifest is rebuilt (with a warning) from
  the first available source, see ``ensure_cache``; without one it raises
  ``metalearn.data.CacheError``.

  Args:
    split: one of ``TFDS_SPLITS`` ("train", "test", "small1", "small2").
    cache_dir: cache dir; see ``store.resolve_cache_dir``.

  Returns:
    The split's ``CachedSplit``; ``images`` is [C, 20, 28, 28] uint8.
  """
  path = store.cache_path(split, cache_dir)
  if not path.is_file():
    raise FileNotFoundError(
        f"No Omniglot cache file {path}. Build the cache once with "
        f"`python -m metalearn.data.prepare --omniglot_dir=DIR "
        f"--cache_dir={path.parent}` or `metalearn.data.ensure_cache()`.")
  store.adopt_unlisted(path.parent)  # No-op once a manifest exists.
  problem = store.file_problem(path)
  if problem is not None:
    _rebuild_damaged(path, problem)
  return store.read_npz(path)


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
  TFDS's download from ``download_url``. See ``build.rebuild_cache`` and
  :mod:`~metalearn.data.omniglot.sources`; with none available it raises
  ``metalearn.data.NoSourceError`` listing all four ways.

  Args:
    omniglot_dir: zip dir; see ``sources.resolve_omniglot_dir``.
    cache_dir: cache dir; see ``store.resolve_cache_dir``.
    progress: show tqdm progress bars while building.
    tfds_data_dir: TFDS data dir; see ``sources.resolve_tfds_data_dir``.
    download_url: base URL of the zips; see ``sources.resolve_download_url``.
    tmp_dir: parent of the temporary build dirs (default: system temp dir).

  Returns:
    The cache dir.
  """
  cache_dir = store.resolve_cache_dir(cache_dir)
  problems = store.verify_cache(cache_dir)
  if not problems:
    return cache_dir
  damaged = {n: why for n, why in problems.items() if why != "missing"}
  if damaged:
    warnings.warn(f"Omniglot cache in {cache_dir} does not verify ({damaged}); "
                  "rebuilding it.", stacklevel=2)
  return build.rebuild_cache(
      omniglot_dir, cache_dir, progress=progress, tfds_data_dir=tfds_data_dir,
      download_url=download_url, tmp_dir=tmp_dir,
      cache_problem="; ".join(f"{n} {why}" for n, why in problems.items()))
