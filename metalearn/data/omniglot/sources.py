"""Where the Omniglot cache comes from: the four sources and their checks.

``ensure_cache`` tries, in this order:

1. an existing metalearn cache that verifies (``store.verify_cache``);
2. a prepared TFDS ``omniglot`` dataset in TFDS's data dir
   ($TFDS_DATA_DIR, else ``~/tensorflow_datasets``);
3. the four original zips: the ``omniglot_dir`` argument, else
   $METALEARN_OMNIGLOT_DIR, else ``<repo>/../shared/data/omniglot`` when
   running from the repository checkout;
4. TFDS's download of the four original zips from ``DEFAULT_URL`` (or
   $METALEARN_OMNIGLOT_URL, a mirror holding the same file names).

Zips, local or downloaded, are accepted only with a sha256 in
``KNOWN_SHA256``. Nothing here imports TensorFlow.
"""

import os
from pathlib import Path
import re
import socket
from typing import Mapping
import urllib.parse
import zipfile
import zlib

from tqdm import tqdm

from metalearn.data import cache

# TFDS split name -> original zip name (all four are needed for any build).
ZIP_NAMES = {
    "train": "images_background.zip",
    "test": "images_evaluation.zip",
    "small1": "images_background_small1.zip",
    "small2": "images_background_small2.zip",
}
TFDS_SPLITS = tuple(ZIP_NAMES)
# Classes per TFDS split.
NUM_CLASSES = {"train": 964, "test": 659, "small1": 136, "small2": 156}
# Accepted sha256 per zip: the ones tensorflow-datasets registers for the
# original archives, and the reproducible offline rebuilds described in
# shared/data/omniglot/README.md (same PNG bytes, different zip container).
KNOWN_SHA256 = {
    "images_background.zip": {
        "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640":
            "original (registered by tensorflow-datasets)",
        "7a4cae547f16207901bd3acaabd866c1dbbef4d559dff26d797dbc6423a64a1e":
            "offline rebuild (same PNG bytes)",
    },
    "images_evaluation.zip": {
        "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee":
            "original (registered by tensorflow-datasets)",
        "d84af890b3ea334eca90f1cb04c6111603a1b620d66b82f86414b8707fbd0e8d":
            "offline rebuild (same PNG bytes)",
    },
    "images_background_small1.zip": {
        "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4":
            "original (registered by tensorflow-datasets)",
    },
    "images_background_small2.zip": {
        "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f":
            "original (registered by tensorflow-datasets)",
    },
}
OMNIGLOT_DIR_ENV = "METALEARN_OMNIGLOT_DIR"
OMNIGLOT_URL_ENV = "METALEARN_OMNIGLOT_URL"
TFDS_DATA_DIR_ENV = "TFDS_DATA_DIR"
# Where TFDS's `omniglot` builder downloads the four zips from.
DEFAULT_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
TFDS_NAME = "omniglot"
PROBE_TIMEOUT_S = 5.0


class SourceUnavailable(Exception):
  """One source is absent (no dataset, no zips, no network): try the next."""


def repo_root() -> Path | None:
  """The repository checkout holding this package, or None if installed."""
  root = Path(__file__).resolve().parents[3]
  is_checkout = ((root / "pyproject.toml").is_file()
                 and (root / "metalearn" / "data").is_dir())
  return root if is_checkout else None


def shared_omniglot_dir() -> Path:
  """The checkout's default zip dir: ``<repo>/../shared/data/omniglot``."""
  return Path(__file__).resolve().parents[4] / "shared" / "data" / "omniglot"


def resolve_omniglot_dir(omniglot_dir: str | os.PathLike | None = None
                        ) -> Path | None:
  """The zip dir: the argument, else $METALEARN_OMNIGLOT_DIR, else (running
  from the checkout) ``shared_omniglot_dir()`` if it exists, else None."""
  if omniglot_dir is not None:
    return Path(omniglot_dir).expanduser()
  if os.environ.get(OMNIGLOT_DIR_ENV):
    return Path(os.environ[OMNIGLOT_DIR_ENV]).expanduser()
  shared = shared_omniglot_dir()
  return shared if repo_root() is not None and shared.is_dir() else None


def resolve_tfds_data_dir(tfds_data_dir: str | os.PathLike | None = None
                         ) -> Path:
  """TFDS's data dir: the argument, else $TFDS_DATA_DIR, else
  ``~/tensorflow_datasets`` (TFDS's own default)."""
  if tfds_data_dir is None:
    tfds_data_dir = (os.environ.get(TFDS_DATA_DIR_ENV)
                     or "~/tensorflow_datasets")
  return Path(tfds_data_dir).expanduser()


def find_tfds_dataset(tfds_data_dir: Path) -> Path | None:
  """The newest prepared ``<data_dir>/omniglot/<version>`` dir, or None.

  A dir counts as prepared when TFDS finished it (``dataset_info.json`` and
  ``features.json`` written; TFDS builds in ``incomplete.*`` dirs).
  """
  root = tfds_data_dir / TFDS_NAME
  if not root.is_dir():
    return None
  versions = [d for d in root.iterdir()
              if re.fullmatch(r"\d+\.\d+\.\d+", d.name)
              and (d / "dataset_info.json").is_file()
              and (d / "features.json").is_file()]
  if not versions:
    return None
  return max(versions, key=lambda d: tuple(map(int, d.name.split("."))))


def resolve_download_url(download_url: str | None = None) -> str:
  """Base URL of the four zips: the argument, else $METALEARN_OMNIGLOT_URL,
  else ``DEFAULT_URL``; always ends with ``/``."""
  url = download_url or os.environ.get(OMNIGLOT_URL_ENV) or DEFAULT_URL
  return url if url.endswith("/") else url + "/"


def probe_url(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
  """None if the URL's host accepts a TCP connection, else the reason.

  Offline, TFDS would retry for minutes; this fails in seconds.
  """
  parts = urllib.parse.urlsplit(url)
  if parts.scheme not in ("http", "https"):
    return None
  port = parts.port or (443 if parts.scheme == "https" else 80)
  try:
    socket.create_connection((parts.hostname, port), timeout=timeout).close()
  except OSError as e:
    return f"cannot reach {parts.hostname}:{port} ({e})"
  return None


def missing_zips_error(where: Path | None,
                       cache_dir: Path) -> FileNotFoundError:
  """The error for a zip dir without the four zips (or no zip dir)."""
  names = ", ".join(ZIP_NAMES.values())
  where = (f"in {where}" if where is not None else
           f"(no dir given, ${OMNIGLOT_DIR_ENV} unset and the default "
           f"{shared_omniglot_dir()} does not exist)")
  return FileNotFoundError(
      f"No complete Omniglot cache in {cache_dir} and the Omniglot zips were "
      f"not found {where}. Expected the four original files: {names}. Pass "
      f"the directory holding them with --omniglot_dir=DIR "
      f"(python -m metalearn.data.prepare), the environment variable "
      f"{OMNIGLOT_DIR_ENV}=DIR, or omniglot_dir=DIR; or point --cache_dir / "
      f"$METALEARN_CACHE_DIR at an existing cache.")


def verify_zips(omniglot_dir: Path, cache_dir: Path, *,
                known_sha256: Mapping[str, Mapping[str, str]] = KNOWN_SHA256,
                progress: bool = False) -> dict[str, tuple[int, str]]:
  """Checks that the four zips exist, have a known sha256 and are readable.

  Raises:
    FileNotFoundError: a zip is missing.
    ValueError: a zip has an unknown sha256 or is not an intact archive.

  Returns:
    {zip name: (size in bytes, sha256)} of the files actually present.
  """
  paths = {name: omniglot_dir / name for name in ZIP_NAMES.values()}
  if not all(p.is_file() for p in paths.values()):
    raise missing_zips_error(omniglot_dir, cache_dir)
  verified = {}
  for name, path in tqdm(paths.items(), desc="verify zips",
                         disable=not progress):
    sha = cache.sha256_file(path)
    known = known_sha256.get(name, {})
    if sha not in known:
      listed = "; ".join(f"{k} ({v})" for k, v in known.items()) or "none"
      raise ValueError(
          f"{path} has sha256 {sha}, which is not a known checksum for {name}."
          f" Known: {listed}. Replace it with the original file.")
    check_archive(path)
    verified[name] = (path.stat().st_size, sha)
  return verified


def check_archive(path: Path) -> None:
  """Raises ValueError unless ``path`` is an intact zip of one top folder."""
  top = path.name[:-len(".zip")] + "/"
  try:
    with zipfile.ZipFile(path) as z:
      bad = z.testzip()
      names = z.namelist()
  except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
    raise ValueError(f"{path} is a corrupt zip archive: {e}") from e
  if bad is not None:
    raise ValueError(f"{path} is a corrupt zip archive: bad CRC in {bad}")
  if not names or any(not n.startswith(top) for n in names):
    raise ValueError(f"{path} does not hold a single top folder {top!r}")


def no_source_error(cache_dir: Path, reasons: Mapping[str, str], *,
                    tfds_data_dir: Path, url: str) -> cache.NoSourceError:
  """The one error that lists the four ways to get the cache.

  Args:
    cache_dir: the cache dir that was checked.
    reasons: {"cache" | "tfds" | "zips" | "download": why it failed}.
    tfds_data_dir: the TFDS data dir that was searched.
    url: the base URL the download used.
  """
  names = ", ".join(ZIP_NAMES.values())

  def why(way: str) -> str:
    return reasons.get(way, "not tried")

  return cache.NoSourceError(
      f"No usable Omniglot cache in {cache_dir}, and no source to build it "
      "from. Any one of these four ways works:\n"
      f"  1. an existing metalearn cache: {why('cache')}.\n"
      "     Point --cache_dir=DIR or $METALEARN_CACHE_DIR at one.\n"
      f"  2. a prepared TFDS '{TFDS_NAME}' dataset in {tfds_data_dir}: "
      f"{why('tfds')}.\n"
      f"     Run `tfds build {TFDS_NAME}` (or tfds.builder('{TFDS_NAME}')"
      f".download_and_prepare()), or set ${TFDS_DATA_DIR_ENV}=DIR "
      "(--tfds_data_dir=DIR).\n"
      f"  3. the four Omniglot zips ({names}): {why('zips')}.\n"
      "     Pass --omniglot_dir=DIR (python -m metalearn.data.prepare), "
      f"omniglot_dir=DIR, or set ${OMNIGLOT_DIR_ENV}=DIR.\n"
      f"  4. TFDS's download of the original zips from {url}: "
      f"{why('download')}.\n"
      "     Needs network access and the `data` extra (pip install "
      f"'metalearn[data]'); set ${OMNIGLOT_URL_ENV}=URL (--download_url=URL) "
      "for a mirror.\n"
      "Then run `python -m metalearn.data.prepare` (add --overwrite to "
      "replace a damaged cache).")
