"""Tests for mini-ImageNet: both file formats, the cache, colour episodes.

Miniature datasets (3 / 2 / 2 classes of 6 images, 8x8 sources resized to
84x84) are written to tmp_path in each format; nothing is downloaded.
"""

import collections
import csv
import hashlib
import importlib.util
import json
import os
from pathlib import Path
import pickle
import subprocess
import sys
import warnings

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest

from metalearn import configs
from metalearn import data
from metalearn.data import episodes
from metalearn.data import miniimagenet
from metalearn.data import miniimagenet_files

REPO = Path(__file__).parents[1]
CLASSES = {"train": 3, "val": 2, "test": 2}
NUM_IMAGES = 6
SOURCE_SIZE = 8


def source_images(split: str, num_images: int = NUM_IMAGES) -> dict:
  """{wnid: uint8 [num_images, 8, 8, 3]}; class names deliberately unsorted."""
  rng = np.random.default_rng(sorted(CLASSES).index(split))
  names = [f"n{split}{c:02d}" for c in range(CLASSES[split])][::-1]
  return {n: rng.integers(0, 256, (num_images, SOURCE_SIZE, SOURCE_SIZE, 3),
                          dtype=np.uint8) for n in names}


def write_csv_format(root: Path, images: dict) -> Path:
  """train/val/test.csv + images/<filename>.png (PNG is lossless)."""
  (root / "images").mkdir(parents=True)
  for split, classes in images.items():
    with open(root / f"{split}.csv", "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["filename", "label"])
      for name, pixels in classes.items():
        for i, x in enumerate(pixels):
          filename = f"{name}{i:08d}.png"
          Image.fromarray(x).save(root / "images" / filename)
          writer.writerow([filename, name])
  return root


def write_pickle_format(root: Path, images: dict, layout: str) -> Path:
  """The learn2learn layout (class_dict) or the data/labels layout."""
  root.mkdir(parents=True)
  for split, classes in images.items():
    stacked = np.concatenate(list(classes.values()))
    ends = np.cumsum([len(x) for x in classes.values()])
    rows = np.split(np.arange(len(stacked)), ends[:-1])
    if layout == "class_dict":
      obj = {"image_data": stacked,
             "class_dict": {n: list(r) for n, r in zip(classes, rows)}}
      name = f"mini-imagenet-cache-{split}.pkl"
    else:
      labels = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
      obj = {"data": stacked, "labels": labels.tolist(),
             "catname2label": {n: i for i, n in enumerate(classes)}}
      name = miniimagenet.PICKLE_NAMES[split][1]
    (root / name).write_bytes(pickle.dumps(obj, protocol=2))
  return root


def resized(x: np.ndarray) -> np.ndarray:
  return np.asarray(Image.fromarray(x).resize((84, 84),
                                              Image.Resampling.LANCZOS))


@pytest.fixture(name="images")
def fixture_images():
  return {split: source_images(split) for split in CLASSES}


@pytest.fixture(name="csv_cache")
def fixture_csv_cache(tmp_path, images):
  data_dir = write_csv_format(tmp_path / "csv", images)
  return miniimagenet.ensure_cache(data_dir, tmp_path / "cache_csv")


def test_csv_and_pickle_give_the_same_cache(tmp_path, images, csv_cache):
  assert csv_cache == tmp_path / "cache_csv" / "mini_imagenet"
  for layout in ("class_dict", "data_labels"):
    pkl_dir = write_pickle_format(tmp_path / layout, images, layout)
    pkl_cache = miniimagenet.ensure_cache(pkl_dir, tmp_path / f"c_{layout}")
    for split in CLASSES:
      a = miniimagenet.load_cached(split, csv_cache)
      b = miniimagenet.load_cached(split, pkl_cache)
      chex.assert_trees_all_equal(a._asdict(), b._asdict())
  for split, classes in images.items():
    got = miniimagenet.load_cached(split, csv_cache)
    assert got.images.dtype == np.uint8
    assert got.images.shape == (CLASSES[split], NUM_IMAGES, 84, 84, 3)
    assert list(got.class_names) == sorted(classes)
    for c, name in enumerate(got.class_names):  # Class-major, file order.
      for i in range(NUM_IMAGES):
        np.testing.assert_array_equal(got.images[c, i],
                                      resized(classes[name][i]))
  loaded = miniimagenet.load_splits(csv_cache)
  assert [x.shape[0] for x in loaded] == [3, 2, 2]


def test_images_of_84x84_are_kept_exactly(tmp_path):
  fit = miniimagenet_files._fit  # pylint: disable=protected-access
  x = np.random.default_rng(0).integers(0, 256, (2, 84, 84, 3), np.uint8)
  assert fit(x) is x
  Image.fromarray(x[0]).save(tmp_path / "a.png")
  np.testing.assert_array_equal(fit([tmp_path / "a.png"])[0], x[0])


def test_manifest_checksums_and_damage(tmp_path, images, csv_cache):
  manifest = json.loads((csv_cache / "manifest.json").read_text())
  assert set(manifest["files"]) == {"train.npz", "val.npz", "test.npz"}
  assert "CSV" in manifest["source"]
  for name, entry in manifest["files"].items():
    content = (csv_cache / name).read_bytes()
    assert entry["sha256"] == hashlib.sha256(content).hexdigest()
    assert entry["bytes"] == len(content)
  assert miniimagenet.verify_cache(csv_cache) == {}
  # A verified cache is reused without the source files.
  mtime = (csv_cache / "train.npz").stat().st_mtime_ns
  assert miniimagenet.ensure_cache(None, csv_cache) == csv_cache
  assert (csv_cache / "train.npz").stat().st_mtime_ns == mtime
  # One flipped byte: reading refuses; ensure_cache rebuilds from the files.
  path = csv_cache / "val.npz"
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  path.write_bytes(bytes(raw))
  assert "sha256" in miniimagenet.verify_cache(csv_cache)["val.npz"]
  with pytest.raises(data.CacheError, match=r"val\.npz is damaged"):
    miniimagenet.load_cached("val", csv_cache)
  with pytest.raises(data.NoSourceError, match="val.npz"), pytest.warns(
      UserWarning, match="does not verify"):
    miniimagenet.ensure_cache(tmp_path / "empty", csv_cache)
  with pytest.warns(UserWarning, match="does not verify"):
    miniimagenet.ensure_cache(tmp_path / "csv", csv_cache)
  assert miniimagenet.verify_cache(csv_cache) == {}


def test_missing_files_say_where_to_put_them(tmp_path, monkeypatch):
  monkeypatch.delenv(miniimagenet.DATA_DIR_ENV, raising=False)
  (tmp_path / "data").mkdir()
  (tmp_path / "data" / "train.csv").write_text("filename,label\n")
  with pytest.raises(FileNotFoundError) as error:
    miniimagenet.ensure_cache(tmp_path / "data", tmp_path / "cache")
  message = str(error.value)
  for part in (str(tmp_path / "data"), "val.csv, test.csv, images/",
               "mini-imagenet-cache-<split>.pkl",
               "miniImageNet_category_split_<split>.pickle",
               "missing for: train, val, test", "ImageNet terms",
               "--dataset=mini_imagenet --data_dir=DIR",
               miniimagenet.DATA_DIR_ENV):
    assert part in message, (part, message)
  with pytest.raises(FileNotFoundError, match="no data dir was given"):
    miniimagenet.ensure_cache(None, tmp_path / "cache")
  with pytest.raises(FileNotFoundError, match="--dataset=mini_imagenet"):
    miniimagenet.load_cached("train", tmp_path / "cache")
  with pytest.raises(ValueError, match=r"split='small1' .*train, val, test"):
    miniimagenet.load_cached("small1", tmp_path / "cache")


def test_a_missing_image_is_named(tmp_path, images):
  data_dir = write_csv_format(tmp_path / "csv", images)
  victim = sorted((data_dir / "images").iterdir())[0]
  victim.unlink()
  with pytest.raises(FileNotFoundError, match=victim.name):
    miniimagenet.ensure_cache(data_dir, tmp_path / "cache")
  assert not (tmp_path / "cache").exists()


def test_uneven_classes_keep_the_smallest_count(tmp_path, images):
  images["val"][sorted(images["val"])[1]] = (
      images["val"][sorted(images["val"])[1]][:4])
  data_dir = write_pickle_format(tmp_path / "pkl", images, "class_dict")
  with pytest.warns(UserWarning, match="keeping the first 4 of each"):
    cache = miniimagenet.ensure_cache(data_dir, tmp_path / "cache")
  splits = miniimagenet.load_splits(cache)
  assert splits.val.shape == (2, 4, 84, 84, 3)
  assert splits.train.shape == (3, 6, 84, 84, 3)


def test_pickles_cannot_run_code(tmp_path, images):
  data_dir = write_pickle_format(tmp_path / "pkl", images, "class_dict")
  path = data_dir / "mini-imagenet-cache-test.pkl"
  path.write_bytes(pickle.dumps({"image_data": collections.Counter()}))
  with pytest.raises(ValueError, match="collections.Counter") as error:
    miniimagenet.read_pickle_split("test", path)
  assert str(path) in str(error.value) and "\n" not in str(error.value)
  path.write_bytes(pickle.dumps({"images": np.zeros(3)}))
  with pytest.raises(ValueError, match="image_data and class_dict"):
    miniimagenet.read_pickle_split("test", path)


# ------------------------------------------------------------ colour episodes


def encoded_colour(num_classes=6, num_images=5, size=8) -> np.ndarray:
  """[C, D, size, size, 3] uint8: R = class, G = image, B marks row 0."""
  x = np.zeros((num_classes, num_images, size, size, 3), np.uint8)
  x[..., 0] = np.arange(num_classes)[:, None, None, None]
  x[..., 1] = np.arange(num_images)[None, :, None, None]
  x[:, :, 0, :, 2] = 255
  return x


def test_colour_tasks():
  images = encoded_colour()
  tasks = episodes.sample_tasks(jax.random.key(0), jnp.asarray(images),
                                n_way=3, k_shot=2, n_query=3, batch_size=4)
  chex.assert_shape(tasks.support_x, (4, 6, 8, 8, 3))
  chex.assert_shape(tasks.query_x, (4, 9, 8, 8, 3))
  assert tasks.support_x.dtype == jnp.float32
  x = np.asarray(tasks.query_x)
  assert x.min() >= 0.0 and x.max() == 1.0  # B channel marker is 255 -> 1.
  codes = np.rint(x * 255).astype(np.int64)
  np.testing.assert_array_equal(codes[..., 0, :, 2], 255)  # Not rotated.
  s_cls = np.rint(np.asarray(tasks.support_x)[..., 0, 0, 0] * 255)
  q_cls, q_img = codes[..., 0, 0, 0], codes[..., 0, 0, 1]
  for t in range(4):
    np.testing.assert_array_equal(tasks.support_y[t], np.repeat(range(3), 2))
    np.testing.assert_array_equal(tasks.query_y[t], np.repeat(range(3), 3))
    label_class = s_cls[t][::2]
    assert len(set(label_class)) == 3
    np.testing.assert_array_equal(q_cls[t], label_class[tasks.query_y[t]])
    assert len(set(zip(q_cls[t], q_img[t]))) == 9
  # Every pixel is the source pixel times float32(1 / 255).
  np.testing.assert_array_equal(x, images[q_cls, q_img] * np.float32(1 / 255))


def test_colour_rotation_turns_height_and_width():
  images = encoded_colour()
  rotated = episodes.rotate_classes(images)
  assert rotated.shape == (24, 5, 8, 8, 3)
  np.testing.assert_array_equal(rotated[6:12],
                                np.rot90(images, 1, axes=(2, 3)))
  key = jax.random.key(3)
  kw = dict(n_way=8, k_shot=1, n_query=2, batch_size=8)
  on_the_fly = episodes.sample_tasks(key, jnp.asarray(images), rotate=True,
                                     **kw)
  chex.assert_trees_all_equal(
      on_the_fly, episodes.sample_tasks(key, jnp.asarray(rotated), **kw))
  # The blue marker row lands on each of the four sides.
  blue = np.asarray(on_the_fly.support_x)[..., 2] == 1.0
  sides = [blue[..., 0, :], blue[..., :, 0], blue[..., -1, :], blue[..., :, -1]]
  counts = [np.all(s, axis=-1).sum() for s in sides]
  assert all(counts) and sum(counts) == 8 * 8, counts


def test_grayscale_is_the_first_channel_of_its_colour_copy():
  gray = (np.random.default_rng(0).random((6, 5, 8, 8)) < 0.3).astype(np.uint8)
  colour = np.repeat(gray[..., None] * 255, 3, axis=-1).astype(np.uint8)
  kw = dict(num_tasks=4, n_way=3, k_shot=1, n_query=2, rotate=True)
  g = episodes.fixed_tasks(1, jnp.asarray(gray), **kw)
  c = episodes.fixed_tasks(1, jnp.asarray(colour), **kw)
  chex.assert_shape(g.support_x, (4, 3, 8, 8, 1))
  assert set(np.unique(g.query_x)) <= {0.0, 1.0}
  chex.assert_trees_all_equal(g.support_x, c.support_x[..., :1])
  chex.assert_trees_all_equal(g.query_y, c.query_y)


def test_bad_image_rank():
  with pytest.raises(ValueError, match=r"\[classes, drawings, height, width"):
    episodes.sample_tasks(jax.random.key(0), jnp.zeros((4, 5, 8)), n_way=2,
                          k_shot=1, n_query=1, batch_size=1)


# ----------------------------------------------------- datasets and configs


def _config(**fields) -> ml_collections.ConfigDict:
  config = configs.base()
  config.update(dict(dataset="mini_imagenet", n_way=2, k_shot=1, n_query=2,
                     eval_n_query=2, val_tasks=2, test_tasks=3))
  config.update(fields)
  return config


def test_the_registry_loads_mini_imagenet(tmp_path, images):
  data_dir = write_csv_format(tmp_path / "csv", images)
  config = _config(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"))
  dataset = data.get("mini_imagenet")
  assert dataset.input_shape(config) == (84, 84, 3)
  assert dataset.objective == "cross_entropy"
  dataset.check(config)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    parts = dataset.load(config)
  assert parts.train_data.shape == (3, 6, 84, 84, 3)
  chex.assert_shape(parts.val_tasks.query_x, (2, 4, 84, 84, 3))
  chex.assert_shape(parts.test_tasks.support_x, (3, 2, 84, 84, 3))
  assert (tmp_path / "cache" / "mini_imagenet" / "manifest.json").is_file()
  with pytest.raises(ValueError, match=r"config.n_way=4 .*val split has 2"):
    dataset.load(_config(n_way=4, rotate=True,
                         cache_dir=str(tmp_path / "cache")))
  with pytest.raises(ValueError, match=r"config.n_query=600 .*<= 600"):
    dataset.check(_config(n_query=600))


def test_the_registry_loads_omniglot(omniglot_cache_dir):
  config = _config(dataset="vinyals", cache_dir=str(omniglot_cache_dir))
  dataset = data.get("vinyals")
  assert dataset.input_shape(config) == (28, 28, 1)
  assert dataset.description == "Omniglot ('vinyals' split)"
  assert dataset.load(config).train_data.shape == (1100, 20, 28, 28)


@pytest.mark.parametrize("arg", ["maml:5w1s", "maml:5w5s", "fomaml:5w1s",
                                 "mamlpp:5w1s", "mamlpp:5w5s"])
def test_configs(arg):
  spec = importlib.util.spec_from_file_location(
      "mini_imagenet_config", REPO / "experiments/configs/mini_imagenet.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(arg)
  algorithm, setting = arg.split(":")
  assert c.dataset == "mini_imagenet" and not c.rotate
  assert c.n_query == c.eval_n_query == 15
  assert c.filters == (48 if algorithm == "mamlpp" else 32)
  assert c.k_shot + c.n_query <= miniimagenet.IMAGES_PER_CLASS
  accuracy, ci = module.PAPER_ACCURACY[algorithm][setting]
  assert f"{accuracy:.2f} ± {ci:.2f}" in c.description
  with pytest.raises(ValueError, match="5w1s, 5w5s"):
    module.get_config("maml:20w1s")


def test_prepare_command(tmp_path, images):
  data_dir = write_pickle_format(tmp_path / "pkl", images, "class_dict")
  command = [sys.executable, "-m", "metalearn.data.prepare",
             "--dataset=mini_imagenet", f"--data_dir={data_dir}",
             f"--cache_dir={tmp_path / 'cache'}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(command, capture_output=True, text=True, check=True,
                       cwd=REPO, env=env).stdout
  assert "mini-ImageNet cache: " in out and "pickles" in out
  assert "train   3 classes x 6 images, 84x84x3 (expected 64 x 600)" in out


def test_the_config_trains_and_tests_on_generated_files(tmp_path, images):
  # End to end: the paper config, shrunk, on a generated CSV dataset; the
  # 84x84x3 model, the colour sampler and the cache meet in one run.
  from metalearn import train  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      "mini_imagenet_config", REPO / "experiments" / "configs" /
      "mini_imagenet.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("maml:5w1s")
  config.data_dir = str(write_csv_format(tmp_path / "csv", images))
  config.cache_dir = str(tmp_path / "cache")
  config.update(dict(n_way=2, n_query=2, eval_n_query=2, filters=4,
                     inner_steps=1, eval_inner_steps=1, meta_batch_size=2,
                     meta_steps=2, steps_per_call=2, eval_every=0,
                     checkpoint_every=0, val_tasks=0, test_tasks=4,
                     conv_impl="xla", progress=False))
  summary, test = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["dataset"] == "mini_imagenet" and summary["meta_steps"] == 2
  assert test.num_tasks == 4 and 0.0 <= test.accuracy <= 1.0
  assert np.isfinite(test.loss)
