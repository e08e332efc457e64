"""The ``folders`` dataset: class folders at any depth into the cache."""

import json
import os
import warnings

import jax
import numpy as np
import pytest

from metalearn import configs
from metalearn import train
from metalearn.data import cache
from metalearn.data import folders
from metalearn.data import registry
from tests.image_trees import make_tree

# 12 classes of 5 to 9 images.
COUNTS = [5, 9, 6, 7, 5, 8, 6, 9, 7, 5, 6, 8]
SETTINGS = dict(image_size=16, channels=1, split_fractions=(0.5, 0.25, 0.25))


def folder_config(root, cache_dir, **overrides):
  c = configs.base()
  c.dataset, c.data_dir, c.cache_dir = "folders", str(root), str(cache_dir)
  c.image_size, c.channels = 16, 1
  c.split_fractions = (0.5, 0.25, 0.25)
  c.n_way, c.k_shot, c.n_query, c.eval_n_query = 3, 1, 2, 2
  c.filters, c.meta_batch_size = 4, 2
  c.meta_steps, c.steps_per_call, c.steps_per_epoch = 4, 2, 2
  c.eval_every = c.checkpoint_every = 2
  c.val_tasks, c.test_tasks = 2, 3
  c.batching, c.conv_impl, c.progress = "map", "xla", False
  for k, v in overrides.items():
    c[k] = v
  return c


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("tree") / "letters"
  return root, make_tree(root, COUNTS)


def test_leaf_folders_at_any_depth_are_the_classes(tree):
  root, names = tree
  found = folders.class_folders(root)
  assert sorted(found) == sorted(names)
  assert "alphabet0/character01" in found
  assert [len(found[n]) for n in names] == COUNTS
  scanned = folders.scan(root, **SETTINGS)
  parts = scanned.classes
  assert [len(parts[s]) for s in folders.SPLITS] == [6, 3, 3]
  assert not set(parts["train"]) & set(parts["test"])
  assert set().union(*map(set, parts.values())) == set(names)
  # The split depends on the class names only.
  assert folders.scan(root, **SETTINGS).classes == parts


def test_cache_is_built_once_verified_and_rebuilt_on_change(tmp_path):
  root = tmp_path / "tree"
  make_tree(root, COUNTS[:8], nested=False)
  out = folders.ensure_cache(root, tmp_path / "cache", progress=False,
                             **SETTINGS)
  assert out.parent == tmp_path / "cache" / "folders"
  manifest = json.loads((out / cache.MANIFEST_NAME).read_text())
  assert set(manifest["files"]) == {"train.npz", "val.npz", "test.npz"}
  assert str(root) in manifest["source"]
  train_split, names = folders.load_split(out, "train")
  assert train_split.images.shape[1:] == (16, 16, 1)
  assert train_split.images.dtype == np.uint8
  assert len(names) == 4 and train_split.images.shape[0] == int(
      np.sum(train_split.counts))
  stamp = (out / "train.npz").stat().st_mtime_ns
  folders.ensure_cache(root, tmp_path / "cache", progress=False, **SETTINGS)
  assert (out / "train.npz").stat().st_mtime_ns == stamp  # reused
  # A new image in a class: a new fingerprint, so the cache is rebuilt.
  before = {s: int(np.sum(folders.load_split(out, s)[0].counts))
            for s in folders.SPLITS}
  (root / "class00" / "img000.png").rename(root / "class00" / "extra.png")
  extra = root / "class00" / "img000.png"
  extra.write_bytes((root / "class00" / "extra.png").read_bytes())
  folders.ensure_cache(root, tmp_path / "cache", progress=False, **SETTINGS)
  after = {s: int(np.sum(folders.load_split(out, s)[0].counts))
           for s in folders.SPLITS}
  assert sum(after.values()) == sum(before.values()) + 1
  # A damaged file is rebuilt too.
  with open(out / "test.npz", "r+b") as f:
    f.seek(100)
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 0xFF]))
  assert cache.problems(out, ["test.npz"], format_version=1)
  with pytest.warns(UserWarning, match="does not verify"):
    folders.ensure_cache(root, tmp_path / "cache", progress=False,
                         **SETTINGS)
  assert not cache.problems(out, ["test.npz"], format_version=1)


def test_train_val_test_dirs_are_used_as_they_are(tmp_path):
  root = tmp_path / "split"
  make_tree(root / "train", [5, 6, 7], nested=False)
  make_tree(root / "test", [5, 5], nested=False, seed=1)
  scanned = folders.scan(root, **SETTINGS)
  assert [len(scanned.classes[s]) for s in folders.SPLITS] == [3, 0, 2]
  out = folders.ensure_cache(root, tmp_path / "cache", progress=False,
                             **SETTINGS)
  val, names = folders.load_split(out, "val")
  assert val.images.shape == (0, 16, 16, 1) and len(names) == 0


def test_colour_images_and_sizes(tree, tmp_path):
  root, _ = tree
  out = folders.ensure_cache(root, tmp_path, image_size=8, channels=3,
                             split_fractions=(0.5, 0.25, 0.25),
                             progress=False)
  classes, _ = folders.load_split(out, "train")
  assert classes.images.shape[1:] == (8, 8, 3)


def test_missing_or_empty_root_names_the_field(tmp_path):
  dataset = registry.get("folders")
  with pytest.raises(ValueError, match=r"config.data_dir='' is invalid: .*"
                     r"ROOT/<class>/.*--config.data_dir=ROOT"):
    dataset.check(folder_config("", tmp_path))
  with pytest.raises(ValueError, match=r"config.data_dir=.*nowhere.* is "
                     r"invalid: it is not a directory.*ROOT/train/"):
    dataset.load(folder_config(tmp_path / "nowhere", tmp_path))
  (tmp_path / "empty" / "a").mkdir(parents=True)
  (tmp_path / "empty" / "a" / "notes.txt").write_text("no images")
  with pytest.raises(ValueError, match=r"config.data_dir=.*empty.* is "
                     r"invalid: no class folder with images"):
    dataset.load(folder_config(tmp_path / "empty", tmp_path))
  for field, value in (("channels", 2), ("image_size", 0),
                       ("split_fractions", (0.5, 0.5, 0.0))):
    with pytest.raises(ValueError, match=f"config.{field}="):
      dataset.check(folder_config(tmp_path, tmp_path, **{field: value}))


def test_load_keeps_unequal_classes_and_drops_too_small_ones(tree, tmp_path):
  root, _ = tree
  dataset = registry.get("folders")
  config = folder_config(root, tmp_path)
  assert dataset.input_shape(config) == (16, 16, 1)
  parts = dataset.load(config)
  counts = np.asarray(parts.train_data.counts)
  assert len(set(counts.tolist())) > 1  # unequal, none cut
  assert parts.test_tasks.query_x.shape == (3, 6, 16, 16, 1)
  assert 0.0 <= float(parts.test_tasks.query_x.min())
  assert float(parts.test_tasks.query_x.max()) <= 1.0
  tasks = jax.jit(dataset.task_fn(config))(jax.random.key(0),
                                           parts.train_data)
  assert tasks.support_x.shape == (2, 3, 16, 16, 1)
  with pytest.warns(UserWarning, match=r"fewer than 7 images \(k_shot \+ "
                    r"n_query\) and are left out"):
    dataset.load(folder_config(root, tmp_path, n_query=6, eval_n_query=4))


def test_trains_a_few_meta_steps_through_train_and_evaluate(tree, tmp_path):
  root, _ = tree
  config = folder_config(root, tmp_path / "cache")
  with warnings.catch_warnings():
    warnings.simplefilter("error", UserWarning)  # no class is dropped
    summary, _ = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["dataset"] == "folders" and summary["meta_steps"] == 4
  assert 0.0 <= summary["test"]["accuracy"] <= 1.0
  assert any((tmp_path / "run" / "best").iterdir())
  assert os.path.isdir(tmp_path / "cache" / "folders")
