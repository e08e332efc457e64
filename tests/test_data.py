"""Tests for metalearn.data: Omniglot cache, named splits, episode sampler.

The real cache is built once per session from ../shared/data/omniglot (about
30 s on 2 cores, needs the `data` extra); everything else is fast.
"""

import io
import os
from pathlib import Path
import subprocess
import sys
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import data
from metalearn.data import omniglot
from metalearn.data.omniglot import sources

REPO = Path(__file__).parents[1]
SHARED = Path(__file__).parents[1].parent / "shared/data/omniglot"
ZIPS = tuple(sources.ZIP_NAMES.values())


@pytest.fixture(scope="session")
def omniglot_cache(request):
  """The real cache, the suite's own (tests/conftest.py): built once from
  the zips with ``build_cache``, as a user's first run builds it. A build
  leaving no temp files behind is checked by tests/test_data_sources.py."""
  if not all((SHARED / name).is_file() for name in ZIPS):
    pytest.skip(f"Omniglot zips not found in {SHARED}")
  return request.getfixturevalue("omniglot_cache_dir")


def _npz_files(cache_dir: Path) -> list[Path]:
  return sorted(cache_dir.glob("*.npz*")) if cache_dir.exists() else []


# ------------------------------------------------------------ the real cache


def test_full_counts(omniglot_cache):
  expected = {"train": (964, 30, 0, 963), "test": (659, 20, 964, 1622),
              "small1": (136, 5, None, None), "small2": (156, 5, None, None)}
  for split, (classes, alphabets, lo, hi) in expected.items():
    cached = data.load_cached(split, omniglot_cache)
    assert cached.images.shape == (classes, 20, 28, 28)
    assert cached.images.dtype == np.uint8
    assert set(np.unique(cached.images)) == {0, 1}
    assert len(np.unique(cached.labels)) == classes
    assert len(set(cached.alphabets)) == alphabets
    assert cached.characters.shape == (classes,)
    if lo is not None:
      np.testing.assert_array_equal(cached.labels, np.arange(lo, hi + 1))


def test_small_splits_hold_background_drawings(omniglot_cache):
  train = data.load_cached("train", omniglot_cache)
  row = {int(l): i for i, l in enumerate(train.labels)}
  for split in ("small1", "small2"):
    small = data.load_cached(split, omniglot_cache)
    for c, label in enumerate(small.labels):
      b = train.images[row[int(label)]].reshape(20, -1)
      s = small.images[c].reshape(20, -1)
      # Same PNGs, maybe in another order: compare as sorted multisets.
      np.testing.assert_array_equal(np.sort(b.view("V784"), 0),
                                    np.sort(s.view("V784"), 0))
      assert small.alphabets[c] == train.alphabets[row[int(label)]]


def test_strokes_survive_downsampling(omniglot_cache):
  for split in ("train", "test"):
    cached = data.load_cached(split, omniglot_cache)
    ink_28 = cached.images.mean(axis=(-2, -1))
    ratio = ink_28 / cached.ink_105
    assert ink_28.min() > 0  # No drawing vanishes.
    assert 0.95 < ratio.mean() < 1.3, ratio.mean()
    assert ratio.min() > 0.5, ratio.min()


@pytest.mark.parametrize("name", data.SPLIT_NAMES)
def test_named_splits(omniglot_cache, name):
  background = data.load_cached("train", omniglot_cache)
  evaluation = data.load_cached("test", omniglot_cache)
  labels = data.split_labels(name, background.labels, evaluation.labels)
  images = data.load_splits(name, omniglot_cache)
  assert tuple(len(x) for x in labels) == data.SPLIT_SIZES[name]
  assert tuple(len(x) for x in images) == data.SPLIT_SIZES[name]
  every = np.concatenate(labels)
  assert len(np.unique(every)) == len(every)  # Disjoint.
  if name == "lake":
    np.testing.assert_array_equal(labels.test, evaluation.labels)
    np.testing.assert_array_equal(np.sort(np.concatenate(labels[:2])),
                                  background.labels)
  else:
    np.testing.assert_array_equal(np.sort(every), np.arange(1623))
  # Images are the cached classes of those labels.
  all_images = np.concatenate([background.images, evaluation.images])
  for part, part_images in zip(labels, images):
    np.testing.assert_array_equal(part_images, all_images[part])
  # Fixed: same result again, and mamlpp shares vinyals' test classes.
  again = data.split_labels(name, background.labels, evaluation.labels)
  chex.assert_trees_all_equal(tuple(labels), tuple(again))
  if name == "mamlpp":
    vinyals = data.split_labels("vinyals", background.labels,
                                evaluation.labels)
    np.testing.assert_array_equal(labels.test, vinyals.test)


def test_rotated_training_set_has_four_times_the_classes(omniglot_cache):
  plain = data.load_splits("lake", omniglot_cache)
  rotated = data.load_splits("lake", omniglot_cache, rotate_train=True)
  c = len(plain.train)
  assert rotated.train.shape == (4 * c, 20, 28, 28)
  np.testing.assert_array_equal(rotated.val, plain.val)
  np.testing.assert_array_equal(rotated.test, plain.test)
  for r in range(4):
    np.testing.assert_array_equal(rotated.train[r * c:(r + 1) * c],
                                  np.rot90(plain.train, r, axes=(-2, -1)))


def test_unknown_split_name(omniglot_cache):
  with pytest.raises(ValueError, match=r"name='bogus'.*lake, vinyals, mamlpp"):
    data.load_splits("bogus", omniglot_cache)
  with pytest.raises(ValueError, match="name='bogus'"):
    data.split_labels("bogus", np.arange(3), np.arange(3, 5))


def test_ensure_cache_reuses_the_cache(omniglot_cache):
  before = {p: p.stat().st_mtime_ns for p in _npz_files(omniglot_cache)}
  assert len(before) == 4
  assert data.ensure_cache(omniglot_dir="/nonexistent",
                           cache_dir=omniglot_cache) == omniglot_cache
  assert {p: p.stat().st_mtime_ns for p in _npz_files(omniglot_cache)} == before
  # The build recorded every file's sha256, and the files match it.
  assert data.verify_cache(omniglot_cache) == {}
  manifest = data.cache.read_manifest(omniglot_cache)
  # The suite's cache came from the zips, or from a prepared TFDS dataset
  # where the machine has one.
  assert manifest["source"].startswith(("zips in ", "TFDS ")), manifest
  assert sorted(manifest["files"]) == sorted(p.name for p in before)


def test_sampler_on_the_real_cache(omniglot_cache):
  train = jax.device_put(data.load_splits("vinyals", omniglot_cache).train)
  for rotate in (False, True):
    tasks = data.sample_tasks(jax.random.key(0), train, n_way=20, k_shot=5,
                              n_query=15, batch_size=4, rotate=rotate)
    chex.assert_shape(tasks.support_x, (4, 100, 28, 28, 1))
    chex.assert_shape(tasks.query_x, (4, 300, 28, 28, 1))
    assert set(np.unique(tasks.query_x)) == {0.0, 1.0}


def test_reading_needs_no_tensorflow(omniglot_cache):
  """`import metalearn.data`, the cache, the sampler and the CLI without TF."""
  code = f"""
import runpy, sys
sys.modules['tensorflow'] = None
sys.modules['tensorflow_datasets'] = None
import jax
import metalearn.data as d
cache = d.ensure_cache(cache_dir={str(omniglot_cache)!r})
splits = d.load_splits('lake', cache, rotate_train=True)
tasks = d.sample_tasks(jax.random.key(0), jax.device_put(splits.train),
                       n_way=5, k_shot=1, n_query=1, batch_size=2)
assert tasks.support_x.shape == (2, 5, 28, 28, 1)
sys.argv = ['prepare', '--cache_dir={omniglot_cache}']
runpy.run_module('metalearn.data.prepare', run_name='__main__')
"""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Reusing the existing cache" in out.stdout
  assert "train    964 classes" in out.stdout
  assert "split 'vinyals': train/val/test classes = 1100/100/423" in out.stdout


# ------------------------------------------------------- build error paths


def test_missing_zips_and_cache(tmp_path, monkeypatch):
  # No prepared TFDS dataset, and the download cannot connect.
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no_tfds"))
  monkeypatch.setenv("METALEARN_OMNIGLOT_URL", "http://127.0.0.1:1/")
  empty, cache = tmp_path / "empty", tmp_path / "cache"
  empty.mkdir()
  with pytest.raises(FileNotFoundError) as e:
    data.ensure_cache(omniglot_dir=empty, cache_dir=cache)
  for needle in (str(empty), str(cache), "--omniglot_dir",
                 "METALEARN_OMNIGLOT_DIR", *ZIPS):
    assert needle in str(e.value)
  # The same through the environment variable.
  monkeypatch.setenv("METALEARN_OMNIGLOT_DIR", str(empty))
  with pytest.raises(FileNotFoundError, match=str(empty)):
    data.ensure_cache(cache_dir=cache)
  # And with nothing to go on at all.
  monkeypatch.delenv("METALEARN_OMNIGLOT_DIR")
  monkeypatch.setattr(sources, "shared_omniglot_dir",
                      lambda: tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="no dir given"):
    data.ensure_cache(cache_dir=cache)
  assert not _npz_files(cache)
  # build_cache reads the zips only, and says where it looked.
  with pytest.raises(FileNotFoundError, match="no dir given"):
    data.build_cache(cache_dir=cache)


def test_reading_a_missing_cache(tmp_path):
  with pytest.raises(FileNotFoundError, match="metalearn.data.prepare"):
    data.load_splits("lake", tmp_path)


def _zip_dir(tmp_path, name, content: bytes) -> Path:
  """A dir with the shared zips (symlinked) and ``name`` replaced."""
  if not all((SHARED / n).is_file() for n in ZIPS):
    pytest.skip(f"Omniglot zips not found in {SHARED}")
  d = tmp_path / "zips"
  d.mkdir()
  for n in ZIPS:
    if n != name:
      (d / n).symlink_to(SHARED / n)
  (d / name).write_bytes(content)
  return d


def _flip_byte(content: bytes, at: int) -> bytes:
  return content[:at] + bytes([content[at] ^ 0xFF]) + content[at + 1:]


@pytest.mark.parametrize("kind", ["flipped_byte", "fake_zip"])
def test_unknown_checksum(tmp_path, kind):
  name = "images_background_small1.zip"
  original = (SHARED / name).read_bytes() if (SHARED / name).exists() else b""
  content = (_flip_byte(original, len(original) // 2) if kind == "flipped_byte"
             else b"PK\x03\x04 this is not the Omniglot archive")
  zips, cache = _zip_dir(tmp_path, name, content), tmp_path / "cache"
  with pytest.raises(ValueError, match=rf"{name} has sha256 .* not a known"):
    data.build_cache(zips, cache, tmp_dir=tmp_path)
  assert not _npz_files(cache)


@pytest.mark.parametrize("kind", ["truncated", "flipped_byte"])
def test_corrupt_archive_with_a_trusted_checksum(tmp_path, kind):
  name = "images_background_small1.zip"
  original = (SHARED / name).read_bytes() if (SHARED / name).exists() else b""
  content = (original[:len(original) // 2] if kind == "truncated"
             else _flip_byte(original, len(original) // 2))
  zips, cache = _zip_dir(tmp_path, name, content), tmp_path / "cache"
  trusted = dict(sources.KNOWN_SHA256,
                 **{name: {data.cache.sha256_file(zips / name): "test"}})
  with pytest.raises(ValueError, match="corrupt zip archive"):
    data.build_cache(zips, cache, tmp_dir=tmp_path, known_sha256=trusted)
  assert not _npz_files(cache)


def test_failure_inside_tfds_leaves_nothing(tmp_path):
  """Valid, trusted zips that TFDS cannot build: wrapped error, no files."""
  pytest.importorskip("tensorflow_datasets")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  png = io.BytesIO()
  Image.new("1", (105, 105), 1).save(png, "PNG")
  zips, cache, work = tmp_path / "zips", tmp_path / "cache", tmp_path / "work"
  zips.mkdir()
  work.mkdir()
  trusted = {}
  for name in ZIPS:
    with zipfile.ZipFile(zips / name, "w") as z:
      z.writestr(f"{name[:-4]}/Alpha/character01/0001_01.png", png.getvalue())
    trusted[name] = {data.cache.sha256_file(zips / name): "test"}
  with pytest.raises(RuntimeError, match="no cache was written"):
    data.build_cache(zips, cache, tmp_dir=work, known_sha256=trusted)
  assert not _npz_files(cache)
  assert not list(work.iterdir())


# ------------------------------------------------------------- the sampler

NUM_CLASSES = 40


def encoded_images(num_classes=NUM_CLASSES, num_drawings=20) -> np.ndarray:
  """[C, D, 28, 28] uint8; row 0: class bits, row 1: drawing bits, row 2: 1."""
  bits = np.arange(28)
  images = np.zeros((num_classes, num_drawings, 28, 28), np.uint8)
  images[:, :, 0] = (np.arange(num_classes)[:, None, None] >> bits) & 1
  images[:, :, 1] = (np.arange(num_drawings)[None, :, None] >> bits) & 1
  images[:, :, 2] = 1
  return images


def decode(x) -> tuple[np.ndarray, np.ndarray]:
  """[..., 28, 28, 1] -> (class, drawing) of each encoded image."""
  x = np.asarray(x)[..., 0].astype(np.int64)
  weights = 1 << np.arange(28)
  return (x[..., 0, :] * weights).sum(-1), (x[..., 1, :] * weights).sum(-1)


@pytest.mark.parametrize("n_way,k_shot,n_query", [(5, 1, 15), (20, 5, 15),
                                                  (3, 19, 1)])
def test_task_properties(n_way, k_shot, n_query):
  images = jnp.asarray(encoded_images())
  labels = np.arange(n_way)
  b = 64
  for seed in range(4):
    tasks = data.sample_tasks(jax.random.key(seed), images, n_way=n_way,
                              k_shot=k_shot, n_query=n_query, batch_size=b)
    chex.assert_shape(tasks.support_x, (b, n_way * k_shot, 28, 28, 1))
    chex.assert_shape(tasks.query_x, (b, n_way * n_query, 28, 28, 1))
    chex.assert_shape(tasks.support_y, (b, n_way * k_shot))
    chex.assert_shape(tasks.query_y, (b, n_way * n_query))
    assert tasks.support_x.dtype == jnp.float32
    assert tasks.support_y.dtype == jnp.int32
    assert set(np.unique(tasks.query_x)) <= {0.0, 1.0}
    s_cls, s_draw = decode(tasks.support_x)
    q_cls, q_draw = decode(tasks.query_x)
    s_y, q_y = np.asarray(tasks.support_y), np.asarray(tasks.query_y)
    for t in range(b):
      # Balanced labels, grouped by label.
      np.testing.assert_array_equal(s_y[t], np.repeat(labels, k_shot))
      np.testing.assert_array_equal(q_y[t], np.repeat(labels, n_query))
      # One class per label, the same in support and query; distinct classes.
      label_class = s_cls[t][::k_shot]
      np.testing.assert_array_equal(s_cls[t], label_class[s_y[t]])
      np.testing.assert_array_equal(q_cls[t], label_class[q_y[t]])
      assert len(set(label_class)) == n_way
      # Distinct drawings within a class: support and query are disjoint.
      pairs = set(zip(s_cls[t], s_draw[t])) | set(zip(q_cls[t], q_draw[t]))
      assert len(pairs) == n_way * (k_shot + n_query)


def test_labels_and_classes_are_random():
  images = jnp.asarray(encoded_images())
  tasks = data.sample_tasks(jax.random.key(1), images, n_way=5, k_shot=1,
                            n_query=1, batch_size=512)
  classes, drawings = decode(tasks.support_x)  # [512, 5]
  # Label order is random: classes come sorted by label only ~1/5! = 1/120.
  sorted_tasks = np.mean(np.all(np.diff(classes, axis=1) > 0, axis=1))
  assert sorted_tasks < 0.05
  # Each class gets each label sometimes; every class and drawing shows up.
  label_of_class = {(c, l) for row in classes for l, c in enumerate(row)}
  assert len(label_of_class) == NUM_CLASSES * 5
  assert set(drawings.ravel()) == set(range(20))
  counts = np.bincount(classes.ravel(), minlength=NUM_CLASSES)
  assert counts.min() > 0.5 * counts.mean()


def test_deterministic_and_jittable():
  images = jnp.asarray(encoded_images())

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(key, images):
    return data.sample_tasks(key, images, n_way=5, k_shot=2, n_query=3,
                             batch_size=8)

  key = jax.random.key(7)
  first = step(key, images)
  chex.assert_trees_all_equal(first, step(key, images))
  chex.assert_trees_all_equal(first, data.sample_tasks(
      key, images, n_way=5, k_shot=2, n_query=3, batch_size=8))
  other = step(jax.random.key(8), images)  # No retrace for a new key.
  assert not np.array_equal(first.support_x, other.support_x)


def test_rotation_is_four_times_the_classes():
  images = encoded_images(num_classes=6)
  rotated = data.rotate_classes(images)
  assert rotated.shape == (24, 20, 28, 28)
  for r in range(4):
    np.testing.assert_array_equal(rotated[r * 6:(r + 1) * 6],
                                  np.rot90(images, r, axes=(-2, -1)))
  np.testing.assert_array_equal(data.rotate_classes(jnp.asarray(images)),
                                rotated)
  # On the fly == materialised, for every key; n_way may exceed C.
  key = jax.random.key(3)
  on_the_fly = data.sample_tasks(key, jnp.asarray(images), n_way=20,
                                 k_shot=1, n_query=2, batch_size=16,
                                 rotate=True)
  materialised = data.sample_tasks(key, jnp.asarray(rotated), n_way=20,
                                   k_shot=1, n_query=2, batch_size=16)
  chex.assert_trees_all_equal(on_the_fly, materialised)
  # All four orientations occur: the all-ones marker row 2 moves around.
  x = np.asarray(on_the_fly.support_x)[..., 0]
  marker_lines = [x[..., 2, :], x[..., :, 2], x[..., 25, :], x[..., :, 25]]
  marks = {r: np.all(m, axis=-1).sum() for r, m in enumerate(marker_lines)}
  assert all(marks.values()), marks
  assert sum(marks.values()) == x.shape[0] * x.shape[1]


def test_fixed_tasks_and_pool():
  images = jnp.asarray(encoded_images())
  kw = dict(num_tasks=30, n_way=5, k_shot=1, n_query=3)
  pool = data.fixed_tasks(0, images, **kw)
  chex.assert_shape(pool.query_x, (30, 15, 28, 28, 1))
  chex.assert_trees_all_equal(pool, data.fixed_tasks(0, images, **kw))
  chex.assert_trees_all_equal(pool, data.fixed_tasks(jax.random.key(0),
                                                     images, **kw))
  assert not np.array_equal(pool.support_x,
                            data.fixed_tasks(1, images, **kw).support_x)
  # Minibatches of distinct pool tasks, deterministic per key, jit-able.
  signature = decode(pool.support_x)[0].tolist()
  draw = jax.jit(data.sample_from_pool, static_argnames="batch_size")
  for seed in range(5):
    batch = draw(jax.random.key(seed), pool, batch_size=10)
    chex.assert_trees_all_equal(batch, data.sample_from_pool(
        jax.random.key(seed), pool, 10))
    index = [signature.index(r) for r in decode(batch.support_x)[0].tolist()]
    assert len(set(index)) == 10
    chex.assert_trees_all_equal(
        batch, jax.tree.map(lambda x: x[np.asarray(index)], pool))


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_way=0), r"n_way=0 .*\[1, 40\]"),
    (dict(n_way=41), r"n_way=41 .*\[1, 40\]"),
    (dict(n_way=161, rotate=True), r"n_way=161 .*\[1, 160\]"),
    (dict(k_shot=0), r"k_shot=0 .*\[1, 19\]"),
    (dict(n_query=0), r"n_query=0 .*\[1, 19\]"),
    (dict(k_shot=5, n_query=16), r"k_shot \+ n_query = 5 \+ 16 = 21 .*<= 20"),
    (dict(batch_size=0), r"batch_size=0 .*\[1, "),
    (dict(n_way=2.0), r"n_way=2.0 .*integer"),
])
def test_bad_sizes(kwargs, match):
  args = dict(n_way=5, k_shot=1, n_query=1, batch_size=2, **{})
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    data.sample_tasks(jax.random.key(0), jnp.asarray(encoded_images()), **args)


def test_bad_pool_sizes():
  images = jnp.asarray(encoded_images())
  with pytest.raises(ValueError, match=r"num_tasks=0 .*\[1, "):
    data.fixed_tasks(0, images, num_tasks=0, n_way=5, k_shot=1, n_query=1)
  with pytest.raises(ValueError, match=r"n_way=50 .*\[1, 40\]"):
    data.fixed_tasks(0, images, num_tasks=3, n_way=50, k_shot=1, n_query=1)
  pool = data.fixed_tasks(0, images, num_tasks=3, n_way=5, k_shot=1, n_query=1)
  with pytest.raises(ValueError, match=r"batch_size=4 .*\[1, 3\]"):
    data.sample_from_pool(jax.random.key(0), pool, 4)
