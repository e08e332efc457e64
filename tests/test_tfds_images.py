"""TFDS image datasets by name, CIFAR-FS and FC100, on
``tfds.testing.mock_data``."""

import numpy as np
import pytest

from metalearn import config_checks
from metalearn import configs
from metalearn.data import registry
from metalearn.data import tfds_images
from metalearn.presets import cifar_fs
from metalearn.presets import fc100

tfds = pytest.importorskip("tensorflow_datasets")


def tfds_config(tmp_path, **overrides):
  c = configs.base()
  c.data_dir, c.cache_dir = str(tmp_path / "tfds"), str(tmp_path / "cache")
  c.image_size, c.channels, c.rotate = 16, 3, False
  c.n_way, c.k_shot, c.n_query, c.eval_n_query = 2, 1, 1, 2
  c.val_tasks, c.test_tasks, c.progress = 2, 2, False
  for k, v in overrides.items():
    c[k] = v
  return c


def test_the_cifar_fs_split_is_64_16_20_disjoint_classes():
  split = tfds_images.CIFAR_FS_SPLIT
  assert [len(split[s]) for s in ("train", "val", "test")] == [64, 16, 20]
  every = [c for s in split.values() for c in s]
  assert sorted(every) == sorted(tfds_images.CIFAR100_NAMES)
  assert len(tfds_images.CIFAR100_NAMES) == 100
  assert "chimpanzee" in split["test"] and "otter" in split["val"]


def test_fc100_splits_whole_superclasses_12_4_4():
  split = tfds_images.FC100_SPLIT
  assert [len(split[s]) for s in ("train", "val", "test")] == [60, 20, 20]
  assert sorted(c for s in split.values() for c in s) == sorted(
      tfds_images.CIFAR100_NAMES)
  supers = list(tfds_images.CIFAR100_SUPERCLASSES.values())
  assert sorted(c for s in supers for c in s.split()) == sorted(
      tfds_images.CIFAR100_NAMES)
  for s, coarse in tfds_images.FC100_SUPERCLASS_SPLIT.items():
    assert set(split[s]) == {c for i in coarse for c in supers[i].split()}
  # Oreshkin et al.'s test superclasses.
  assert {"whale", "bee", "fox", "baby"} <= set(split["test"])
  assert {"bear", "camel", "crab", "mouse"} <= set(split["val"])


def test_fc100_loads_its_classes_into_the_cache(tmp_path):
  config = tfds_config(tmp_path, dataset="fc100")
  dataset = registry.get("fc100")
  dataset.check(config)
  with tfds.testing.mock_data(num_examples=600):
    parts = dataset.load(config)
  assert parts.test_tasks.query_x.shape == (2, 4, 16, 16, 3)
  out = tfds_images.ensure_cache(
      "cifar100", tfds_images.FC100_SPLIT, config.cache_dir,
      data_dir=config.data_dir, image_size=16, channels=3,
      split="train+test", label_names=tfds_images.CIFAR100_NAMES)
  names = list(np.load(out / "val.npz")["class_names"])
  assert names == list(tfds_images.FC100_SPLIT["val"])


def test_cifar_fs_loads_its_classes_into_the_cache(tmp_path, monkeypatch):
  config = tfds_config(tmp_path, dataset="cifar_fs")
  dataset = registry.get("cifar_fs")
  dataset.check(config)
  with tfds.testing.mock_data(num_examples=600):
    parts = dataset.load(config)
  assert parts.train_data.images.shape[1:] == (16, 16, 3)
  assert len(parts.train_data.counts) <= 64  # classes drawn too rarely drop
  assert parts.test_tasks.support_x.shape == (2, 2, 16, 16, 3)
  out = tfds_images.ensure_cache(
      "cifar100", tfds_images.CIFAR_FS_SPLIT, config.cache_dir,
      data_dir=config.data_dir, image_size=16, channels=3,
      split="train+test", label_names=tfds_images.CIFAR100_NAMES)
  names = {s: list(np.load(out / f"{s}.npz")["class_names"])
           for s in ("train", "val", "test")}
  assert names["test"] == list(tfds_images.CIFAR_FS_SPLIT["test"])
  # Built once: a second load needs no TFDS at all.
  monkeypatch.setattr(tfds_images, "read_tfds", None)
  again = dataset.load(config)
  np.testing.assert_array_equal(again.train_data.counts,
                                parts.train_data.counts)


def test_any_tfds_dataset_by_name_split_by_class_fractions(tmp_path):
  config = tfds_config(tmp_path, dataset="tfds_images", tfds_name="mnist",
                       channels=1, split_fractions=(0.6, 0.2, 0.2))
  dataset = registry.get("tfds_images")
  assert dataset.input_shape(config) == (16, 16, 1)
  with tfds.testing.mock_data(num_examples=300):
    parts = dataset.load(config)
  assert len(parts.train_data.counts) == 6
  assert parts.val_tasks.query_x.shape == (2, 4, 16, 16, 1)
  with pytest.raises(ValueError, match="config.tfds_name='' is invalid"):
    dataset.check(tfds_config(tmp_path, dataset="tfds_images"))


def test_the_presets_pass_the_config_checks():
  for arg in ("maml:5w1s", "mamlpp:5w5s"):
    for module, name in ((cifar_fs, "cifar_fs"), (fc100, "fc100")):
      c = module.get_config(arg)
      assert c.dataset == name and (c.image_size, c.channels) == (32, 3)
      config_checks.validate_config(c)
  assert cifar_fs.PAPER_ACCURACY["maml"] == {"5w1s": (58.9, 1.9),
                                            "5w5s": (71.5, 1.0)}
  assert "paper: 58.9 ± 1.9%" in cifar_fs.get_config("maml:5w1s").description
  assert "not reported" in fc100.get_config("maml:5w5s").description
