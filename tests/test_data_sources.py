"""Where the Omniglot cache comes from, and how it verifies itself.

One real build (about 30 s on 2 cores): TFDS downloads the zips from a
loopback HTTP server serving ../shared/data/omniglot, into an empty cache
dir and an empty TFDS data dir, with no zip dir. The other tests reuse what
it leaves behind (the cache and TFDS's prepared dataset).
"""

import functools
import http.server
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from metalearn import data
from metalearn.data.omniglot import build
from metalearn.data.omniglot import sources
from metalearn.data.omniglot import store

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "omniglot"
ZIPS = tuple(sources.ZIP_NAMES.values())


def _dead_url() -> str:
  """A loopback URL nobody listens on: connections are refused at once."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  timeout = 30  # Seconds a connection may idle: bounds a stuck request.

  def log_message(self, *args):  # pylint: disable=arguments-differ
    pass


@pytest.fixture(scope="module")
def zip_server():
  """Base URL of a loopback HTTP server serving the shared zips."""
  if not all((SHARED / name).is_file() for name in ZIPS):
    pytest.skip(f"Omniglot zips not found in {SHARED}")
  handler = functools.partial(_QuietHandler, directory=str(SHARED))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  server.daemon_threads = True
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}/"
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def downloaded(zip_server, tmp_path_factory):
  """(cache dir, TFDS data dir) after a build from the download alone."""
  pytest.importorskip("tensorflow_datasets")
  root = tmp_path_factory.mktemp("download")
  cache, tfds_dir, work = root / "cache", root / "tfds", root / "work"
  tfds_dir.mkdir()
  work.mkdir()
  with pytest.MonkeyPatch.context() as mp:
    mp.delenv(sources.OMNIGLOT_DIR_ENV, raising=False)
    mp.setenv(sources.TFDS_DATA_DIR_ENV, str(tfds_dir))
    mp.setenv(sources.OMNIGLOT_URL_ENV, zip_server)
    mp.setattr(sources, "shared_omniglot_dir", lambda: root / "nowhere")
    assert data.ensure_cache(cache_dir=cache, tmp_dir=work) == cache
  assert not list(work.iterdir()), "temp files were left behind"
  return cache, tfds_dir


@pytest.fixture
def no_sources(tmp_path, monkeypatch):
  """Offline, no zips, empty TFDS data dir: only the cache can help."""
  monkeypatch.delenv(sources.OMNIGLOT_DIR_ENV, raising=False)
  monkeypatch.setenv(sources.TFDS_DATA_DIR_ENV, str(tmp_path / "no_tfds"))
  monkeypatch.setenv(sources.OMNIGLOT_URL_ENV, _dead_url())
  monkeypatch.setattr(sources, "shared_omniglot_dir",
                      lambda: tmp_path / "nowhere")


def _copy_cache(cache: Path, to: Path) -> Path:
  shutil.copytree(cache, to)
  return to


def _flip_byte(path: Path) -> None:
  content = bytearray(path.read_bytes())
  content[len(content) // 2] ^= 0xFF
  path.write_bytes(bytes(content))


def test_download_builds_the_cache(downloaded):
  cache, tfds_dir = downloaded
  manifest = data.cache.read_manifest(cache)
  assert manifest["source"].startswith("TFDS download from http://127.0.0.1")
  assert sorted(manifest["files"]) == sorted(f"{s}.npz"
                                            for s in data.TFDS_SPLITS)
  assert data.verify_cache(cache) == {}
  for split, classes in sources.NUM_CLASSES.items():
    cached = data.load_cached(split, cache)
    assert cached.images.shape == (classes, 20, 28, 28)
    # The source zip's sha256 is one of the known ones (here: the rebuilds).
    with np.load(store.cache_path(split, cache)) as z:
      assert str(z["source_sha256"]) in sources.KNOWN_SHA256[
          sources.ZIP_NAMES[split]]
  # TFDS's prepared dataset stays in the TFDS data dir, as tfds.load does.
  assert sources.find_tfds_dataset(tfds_dir) is not None


def test_no_source_lists_the_four_ways(tmp_path, no_sources):
  cache = tmp_path / "cache"
  with pytest.raises(data.NoSourceError) as e:
    data.ensure_cache(cache_dir=cache)
  message = str(e.value)
  for needle in ("1. an existing metalearn cache", "METALEARN_CACHE_DIR",
                 "2. a prepared TFDS 'omniglot' dataset", "TFDS_DATA_DIR",
                 "tfds build omniglot", "3. the four Omniglot zips",
                 "--omniglot_dir", "METALEARN_OMNIGLOT_DIR",
                 "4. TFDS's download", "METALEARN_OMNIGLOT_URL",
                 "cannot reach 127.0.0.1", str(cache), *ZIPS):
    assert needle in message, needle
  assert not cache.exists()


def test_damaged_file_is_rebuilt_from_the_tfds_dataset(downloaded, tmp_path,
                                                      no_sources, monkeypatch):
  """A byte-flipped file, TFDS's prepared dataset as the only source."""
  cache, tfds_dir = downloaded
  monkeypatch.setenv(sources.TFDS_DATA_DIR_ENV, str(tfds_dir))
  copy = _copy_cache(cache, tmp_path / "copy")
  _flip_byte(copy / "train.npz")
  with pytest.warns(UserWarning, match=r"train.npz was damaged \(sha256"):
    data.load_cached("train", copy)
  assert data.verify_cache(copy) == {}
  assert data.cache.read_manifest(copy)["source"].startswith("TFDS dataset ")
  # The same arrays as the cache built from the download.
  for split in data.TFDS_SPLITS:
    a, b = data.load_cached(split, cache), data.load_cached(split, copy)
    for field in store.CachedSplit._fields:
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_damaged_file_without_source_is_refused(downloaded, tmp_path,
                                                no_sources):
  copy = _copy_cache(downloaded[0], tmp_path / "copy")
  _flip_byte(copy / "test.npz")
  with pytest.raises(data.CacheError) as e:
    data.load_splits("vinyals", copy)
  message = str(e.value)
  assert "\n" not in message
  assert str(copy / "test.npz") in message
  assert "python -m metalearn.data.prepare --overwrite" in message
  # ensure_cache also refuses, listing the four ways and the damage.
  with pytest.raises(data.NoSourceError, match=r"test.npz sha256"):
    with pytest.warns(UserWarning, match="does not verify"):
      data.ensure_cache(cache_dir=copy)


def test_cache_without_manifest_is_adopted(downloaded, tmp_path, no_sources):
  copy = _copy_cache(downloaded[0], tmp_path / "copy")
  (copy / data.cache.MANIFEST_NAME).unlink()
  assert data.ensure_cache(cache_dir=copy) == copy
  assert data.cache.read_manifest(copy)["source"].startswith("adopted")
  # A damaged file is not adopted.
  (copy / data.cache.MANIFEST_NAME).unlink()
  _flip_byte(copy / "small1.npz")
  assert "small1.npz" in data.verify_cache(copy)
  assert data.cache.read_manifest(copy) is None


def test_unknown_download_checksum_is_rejected(tmp_path):
  """A mirror serving other bytes: refused, naming the known checksums."""
  pytest.importorskip("tensorflow_datasets")
  bad = tmp_path / "mirror"
  bad.mkdir()
  for name in ZIPS:
    (bad / name).write_bytes(b"PK\x03\x04 not the Omniglot archive")
  handler = functools.partial(_QuietHandler, directory=str(bad))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    zip_dir = build.download_zips(url, tmp_path)
    with pytest.raises(ValueError, match="not a known checksum"):
      sources.verify_zips(zip_dir, tmp_path)
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_loading_never_imports_tensorflow(downloaded):
  code = ("import metalearn, metalearn.data, sys; "
          f"metalearn.data.load_splits('vinyals', {str(downloaded[0])!r}); "
          "assert 'tensorflow' not in sys.modules; "
          "assert 'tensorflow_datasets' not in sys.modules")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]


def test_tfds_split(downloaded):
  cache = downloaded[0]
  splits = data.load_splits("tfds", cache)
  assert splits.val.shape == (0, 20, 28, 28)
  assert splits.val.dtype == np.uint8
  np.testing.assert_array_equal(splits.train,
                                data.load_cached("train", cache).images)
  np.testing.assert_array_equal(splits.test,
                                data.load_cached("test", cache).images)
  rotated = data.load_splits("tfds", cache, rotate_train=True)
  assert rotated.train.shape == (4 * 964, 20, 28, 28)
