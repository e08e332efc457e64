"""CUB-200-2011 and tiered-ImageNet from tiny trees in their own layouts."""

import numpy as np
import pytest

from metalearn import config_checks
from metalearn import configs
from metalearn import train
from metalearn.data import cub
from metalearn.data import folders
from metalearn.data import registry
from metalearn.data import tiered_imagenet
from metalearn.presets import cub as cub_preset
from metalearn.presets import tiered_imagenet as tiered_preset
from tests.image_trees import class_pattern
from tests.image_trees import make_tree
from tests.image_trees import write_image


def cub_names(count=cub.NUM_CLASSES):
  return [f"{i:03d}.Bird_{i}" for i in range(1, count + 1)]


def make_cub(root, count=cub.NUM_CLASSES, images=2):
  """``root/CUB_200_2011/images/<id>.<name>/*.jpg``, tiny RGB JPEGs."""
  folder = root / cub.ARCHIVE_DIR / "images"
  for c, name in enumerate(cub_names(count)):
    for i in range(images):
      write_image(folder / name / f"Bird_{c}_{i}.jpg", class_pattern(c, 10),
                  colour=True, fmt="JPEG")
  return folder


def tiny_config(dataset, data_dir, cache_dir, **fields):
  c = configs.base()
  c.dataset, c.data_dir, c.cache_dir = dataset, str(data_dir), str(cache_dir)
  c.image_size, c.channels, c.rotate = 8, 3, False
  c.n_way, c.k_shot, c.n_query, c.eval_n_query = 3, 1, 1, 1
  c.model, c.hidden = "mlp", (8,)
  c.meta_batch_size, c.inner_steps, c.eval_inner_steps = 2, 1, 1
  c.meta_steps, c.steps_per_call, c.steps_per_epoch = 2, 1, 1
  c.val_tasks, c.test_tasks, c.eval_every = 2, 2, 0
  c.checkpoint_every, c.progress = 0, False
  c.update(fields)
  return c


def test_chen_split_takes_every_other_class_then_every_fourth():
  split = cub.chen_split(reversed(cub_names() + ["attributes"]))
  assert [len(split[s]) for s in ("train", "val", "test")] == [100, 50, 50]
  assert split["train"][:3] == ["001.Bird_1", "003.Bird_3", "005.Bird_5"]
  assert split["val"][:2] == ["002.Bird_2", "006.Bird_6"]
  assert split["test"][:2] == ["004.Bird_4", "008.Bird_8"]
  assert sorted(sum(split.values(), [])) == cub_names()


def test_cub_missing_files_say_what_to_put_where(tmp_path):
  dataset = registry.get("cub")
  with pytest.raises(ValueError, match=r"config.data_dir='' is invalid: .*"
                     r"DIR/CUB_200_2011/images/ holds the 200 class folders "
                     r"001.Black_footed_Albatross/"):
    dataset.check(tiny_config("cub", "", tmp_path))
  with pytest.raises(ValueError, match=r"no CUB_200_2011/images/ folder in "
                     r"it; extract CUB_200_2011.tgz"):
    dataset.load(tiny_config("cub", tmp_path, tmp_path))
  make_cub(tmp_path / "partial", count=7, images=1)
  with pytest.raises(ValueError, match=r"holds 7 class folders <id>.<name>/, "
                     r"not CUB-200-2011's 200"):
    dataset.load(tiny_config("cub", tmp_path / "partial", tmp_path))


def test_cub_loads_chen_splits_and_trains(tmp_path):
  make_cub(tmp_path / "data")
  config = tiny_config("cub", tmp_path / "data", tmp_path / "cache")
  dataset = registry.get("cub")
  dataset.check(config)
  parts = dataset.load(config)
  assert len(parts.train_data.counts) == 100
  assert parts.test_tasks.query_x.shape == (2, 3, 8, 8, 3)
  out = folders.ensure_cache(cub.images_dir(config.data_dir),
                             config.cache_dir, image_size=8, channels=3,
                             split=cub.chen_split, progress=False)
  names = {s: list(folders.load_split(out, s)[1]) for s in folders.SPLITS}
  assert names["test"][:2] == ["004.Bird_4", "008.Bird_8"]
  assert len(names["val"]) == len(names["test"]) == 50
  # DIR may also be CUB_200_2011/ itself: the same cache.
  assert cub.images_dir(tmp_path / "data" / cub.ARCHIVE_DIR) == (
      cub.images_dir(tmp_path / "data"))
  summary, _ = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["dataset"] == "cub" and summary["meta_steps"] == 2


def test_tiered_imagenet_needs_train_val_test(tmp_path):
  dataset = registry.get("tiered_imagenet")
  with pytest.raises(ValueError, match=r"config.data_dir='' is invalid: .*"
                     r"DIR/train/<class>/\*.jpg \(351 classes\), "
                     r"DIR/val/<class>/\*.jpg \(97\) and "
                     r"DIR/test/<class>/\*.jpg \(160\)"):
    dataset.check(tiny_config("tiered_imagenet", "", tmp_path))
  make_tree(tmp_path / "tree" / "train", [3, 3, 3], nested=False)
  with pytest.raises(ValueError, match=r"it has no val/, test/ folders; put "
                     r"tiered-ImageNet's class folders in DIR/train/"):
    dataset.load(tiny_config("tiered_imagenet", tmp_path / "tree", tmp_path))


def test_tiered_imagenet_reads_its_tree_and_trains(tmp_path):
  root = tmp_path / "tiered"
  make_tree(root / "train", [3, 4, 3, 3], nested=False)
  make_tree(root / "val", [3, 3, 3], nested=False, seed=1)
  make_tree(root / "test", [3, 3, 4], nested=True, seed=2)
  config = tiny_config("tiered_imagenet", root, tmp_path / "cache")
  with pytest.warns(UserWarning, match=r"has 4 / 3 / 3 train / val / test "
                    r"classes, not Ren et al.'s 351 / 97 / 160"):
    parts = registry.get("tiered_imagenet").load(config)
  np.testing.assert_array_equal(parts.train_data.counts, [3, 4, 3, 3])
  assert parts.val_tasks.support_x.shape == (2, 3, 8, 8, 3)
  with pytest.warns(UserWarning, match="Ren et al."):
    summary, _ = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["dataset"] == "tiered_imagenet"
  assert summary["meta_steps"] == 2


def test_the_presets_pass_the_config_checks(tmp_path):
  for module, name in ((cub_preset, "cub"),
                       (tiered_preset, "tiered_imagenet")):
    for arg in ("maml:5w1s", "mamlpp:5w5s"):
      c = module.get_config(arg)
      assert c.dataset == name and (c.image_size, c.channels) == (84, 3)
      paper = module.PAPER_ACCURACY["maml"][arg.split(":")[1]] if (
          arg.startswith("maml:")) else None
      assert (paper is None or f"paper: {paper[0]} ± {paper[1]}%" in
              c.description), c.description
      c.data_dir = str(tmp_path)
      config_checks.validate_config(c)
