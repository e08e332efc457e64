"""A verified cache of ``.npz`` files: one manifest with a sha256 per file.

A dataset's cache dir holds its ``.npz`` files and ``manifest.json``::

  {"format_version": 1, "source": "where the data came from",
   "files": {"train.npz": {"sha256": "...", "bytes": 123}, ...}}

``write_files`` writes every file to a temp file, renames them into place,
then writes the manifest (also temp file + rename), so a reader never sees a
half-written file. ``problems`` says which files do not match the manifest;
``read_npz`` reads a file that does. Numpy and hashlib only.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Sequence
import uuid

import numpy as np

CACHE_DIR_ENV = "METALEARN_CACHE_DIR"
MANIFEST_NAME = "manifest.json"

# (resolved path, mtime_ns, size) -> sha256 of file versions already hashed.
_SHA256_SEEN: dict[tuple[str, int, int], str] = {}


class CacheError(ValueError):
  """A damaged cache file that could not be rebuilt."""


class NoSourceError(FileNotFoundError):
  """No cache, and none of the sources to build one is available."""


def sha256_file(path: Path) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


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
    manifest = json.loads((Path(cache_dir) / MANIFEST_NAME).read_text())
  except (OSError, ValueError):
    return None
  if not isinstance(manifest, dict):
    return None
  return manifest if isinstance(manifest.get("files"), dict) else None


def write_manifest(cache_dir: Path, names: Sequence[str], source: str, *,
                   format_version: int) -> None:
  """Records the sha256 and size of ``names`` (files in ``cache_dir``)."""
  manifest = {
      "format_version": format_version,
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


def file_problem(path: Path, manifest: Mapping | None, *,
                 format_version: int) -> str | None:
  """Why ``path`` does not verify against the manifest, or None if it does."""
  if not path.is_file():
    return "missing"
  if manifest is None:
    return f"no readable {MANIFEST_NAME}"
  if manifest.get("format_version") != format_version:
    return (f"cache format {manifest.get('format_version')}, expected "
            f"{format_version}")
  entry = manifest["files"].get(path.name)
  if not isinstance(entry, dict) or "sha256" not in entry:
    return f"not listed in {MANIFEST_NAME}"
  sha = file_sha256(path)
  if sha != entry["sha256"]:
    return (f"sha256 {sha[:12]}... does not match {entry['sha256'][:12]}... "
            f"recorded in {MANIFEST_NAME}")
  return None


def problems(cache_dir: Path, names: Sequence[str], *,
             format_version: int) -> dict[str, str]:
  """{file name: problem} of every one of ``names`` that does not verify.

  Empty means every file exists and matches its manifest sha256.
  """
  manifest = read_manifest(cache_dir)
  found = {n: file_problem(cache_dir / n, manifest,
                           format_version=format_version) for n in names}
  return {n: why for n, why in found.items() if why is not None}


def write_files(cache_dir: Path, files: Mapping[str, Mapping[str, object]], *,
                source: str, format_version: int,
                compress: bool = False) -> None:
  """Writes every file and then the manifest: temp files, then renames.

  Args:
    cache_dir: the cache dir (created if needed).
    files: {file name, e.g. "train.npz": {array name: array}}; each file
      also gets a ``format_version`` array.
    source: where the data came from (recorded in the manifest).
    format_version: the cache format, in every file and the manifest.
    compress: ``np.savez_compressed`` instead of ``np.savez``.
  """
  cache_dir.mkdir(parents=True, exist_ok=True)
  save = np.savez_compressed if compress else np.savez
  tmp = {n: cache_dir / f".{n}.{uuid.uuid4().hex}.tmp" for n in files}
  try:
    for name, arrays in files.items():
      with open(tmp[name], "wb") as f:
        save(f, format_version=format_version, **arrays)
    for name, path in tmp.items():
      os.replace(path, cache_dir / name)
  finally:
    for path in tmp.values():
      path.unlink(missing_ok=True)
  write_manifest(cache_dir, list(files), source,
                 format_version=format_version)


def read_npz(path: Path, fields: Sequence[str], *, format_version: int,
             rebuild: str) -> tuple[np.ndarray, ...]:
  """Reads ``fields`` of one cache file (every array, so zip CRCs are checked).

  Raises:
    CacheError: the file has another format version; names ``rebuild``, the
      command that rebuilds it.
  """
  with np.load(path, allow_pickle=False) as z:
    if int(z["format_version"]) != format_version:
      raise CacheError(
          f"{path} has cache format {int(z['format_version'])}, expected "
          f"{format_version}; rebuild it with `{rebuild}`.")
    return tuple(z[f] for f in fields)
