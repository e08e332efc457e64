"""Any TFDS image-classification dataset by name, split by class; CIFAR-FS
and FC100.

Two registered datasets read a tensorflow-datasets dataset once into the
verified cache (:mod:`metalearn.data.class_cache`'s format), every image
converted to ``config.channels`` and resized to ``config.image_size``:

* ``tfds_images``: ``config.tfds_name`` (e.g. ``cifar10``, ``mnist``,
  ``oxford_flowers102``, or ``name:version``), all of its splits together,
  its classes split by ``config.split_fractions`` in the order of
  ``sha256("folders/0/<class name>")`` (as the ``folders`` dataset does);
* ``cifar_fs``: CIFAR-FS (Bertinetto et al. 2019): the 100 classes of
  ``cifar100`` (train and test splits together, 600 images each) in the
  64 / 16 / 20 class split of that paper (:data:`CIFAR_FS_SPLIT`);
* ``fc100``: FC100 (Oreshkin et al. 2018): the same images split by
  CIFAR-100's 20 superclasses, 12 / 4 / 4 (60 / 20 / 20 classes), so that
  no test class shares a superclass with a training class
  (:data:`FC100_SPLIT`).

TFDS reads ``config.data_dir`` as its data dir ("" -> $TFDS_DATA_DIR or
``~/tensorflow_datasets``) and downloads and prepares the dataset there if
it is not yet. TensorFlow and tensorflow-datasets are imported only to build
the cache, which lives in ``<cache root>/tfds/<name>-<hash of the name,
data dir and settings>/``; once built it is reused without them (delete it
to rebuild, e.g. for a new version: pin one with ``name:version``).
"""

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence

import ml_collections
import numpy as np
from tqdm import tqdm

from metalearn.data import cache
from metalearn.data import class_cache
from metalearn.data import folders
from metalearn.data import images as images_lib
from metalearn.data import ragged
from metalearn.data import registry

CACHE_SUBDIR = "tfds"
# CIFAR-100's fine labels, in label order (alphabetical, as in the dataset).
CIFAR100_NAMES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle
bicycle bottle bowl boy bridge bus butterfly camel can castle caterpillar
cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
squirrel streetcar sunflower sweet_pepper table tank telephone television
tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman
worm""".split())
_CIFAR_FS_VAL = ("beaver otter flatfish shark lamp television beetle butterfly "
                 "sea camel cattle crab crocodile maple_tree motorcycle "
                 "tractor").split()
_CIFAR_FS_TEST = ("whale poppy rose sweet_pepper telephone bed table wardrobe "
                  "leopard plain chimpanzee fox snail worm baby man woman "
                  "bicycle pickup_truck rocket").split()
# Bertinetto et al. 2019 (R2D2), as distributed with their code: split ->
# CIFAR-100 class names.
CIFAR_FS_SPLIT = {
    "train": tuple(n for n in CIFAR100_NAMES
                   if n not in _CIFAR_FS_VAL + _CIFAR_FS_TEST),
    "val": tuple(sorted(_CIFAR_FS_VAL)),
    "test": tuple(sorted(_CIFAR_FS_TEST)),
}


# CIFAR-100's 20 superclasses (its coarse labels, in label order) and their
# fine classes.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant "
                                      "kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}
# Oreshkin et al. 2018 (TADAM), as in their code: split -> coarse labels.
FC100_SUPERCLASS_SPLIT = {"train": (1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19),
                          "val": (8, 11, 13, 16), "test": (0, 7, 12, 14)}
FC100_SPLIT = {
    split: tuple(sorted(
        name for coarse in coarse_labels
        for name in list(CIFAR100_SUPERCLASSES.values())[coarse].split()))
    for split, coarse_labels in FC100_SUPERCLASS_SPLIT.items()}


def read_tfds(name: str, data_dir: Optional[str], *, image_size: int,
              channels: int, split: Optional[str] = None,
              progress: bool = True) -> tuple[dict, list[str], str]:
  """Every example of a TFDS dataset, grouped by class.

  Args:
    name: the TFDS name (``name[/config][:version]``).
    data_dir: TFDS's data dir (None: TFDS's default).
    image_size, channels: every image becomes uint8 [S, S, channels].
    split: TFDS split spec; None: all of the dataset's splits.
    progress: a tqdm bar while decoding.

  Returns:
    ``({label: [images]}, label names, the builder's full name)``.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  builder.download_and_prepare()
  image_key, label_key = builder.info.supervised_keys or ("image", "label")
  names = list(builder.info.features[label_key].names)
  split = split or "+".join(sorted(builder.info.splits)) or "train"
  ds = builder.as_dataset(split=split, shuffle_files=False)
  groups: dict[int, list[np.ndarray]] = {}
  for example in tqdm(tfds.as_numpy(ds), desc=f"tfds: decoding {name}",
                      unit="img", disable=not progress):
    pixels = np.asarray(example[image_key])
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
      pixels = pixels[..., 0]
    groups.setdefault(int(example[label_key]), []).append(
        class_cache.fit_image(Image.fromarray(pixels), image_size, channels))
  return groups, names, builder.info.full_name


def resolve_cache_dir(key: str, cache_dir) -> Path:
  """``<cache root>/tfds/<name>-<12 hex of key>``."""
  base = Path(cache_dir or os.environ.get(cache.CACHE_DIR_ENV)
              or "~/.cache/metalearn").expanduser()
  safe = "".join(c if c.isalnum() or c in "-_" else "_"
                 for c in key.split(" ")[0])
  return (base / CACHE_SUBDIR
          / f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:12]}")


def ensure_cache(name: str, split_classes, cache_dir=None, *,
                 data_dir: Optional[str] = None, image_size: int,
                 channels: int, split: Optional[str] = None,
                 label_names: Optional[Sequence[str]] = None,
                 progress: bool = True) -> Path:
  """The cache dir of one TFDS dataset's class split, built if needed.

  Args:
    name: the TFDS name.
    split_classes: ``{"train"/"val"/"test": class names}``, or the
      ``(train, val, test)`` fractions of the sha256 order.
    cache_dir: cache root (see ``resolve_cache_dir``).
    data_dir, image_size, channels, split, progress: as in ``read_tfds``.
    label_names: the class name of each label, when the caller knows them
      (CIFAR-100's); checked against the dataset's own unless those are
      bare numbers (no label file, as under ``tfds.testing.mock_data``).

  Returns:
    The cache dir.
  """
  spec = (sorted((k, tuple(v)) for k, v in split_classes.items())
          if isinstance(split_classes, dict) else tuple(split_classes))
  key = (f"{name} {data_dir or ''} {split or ''} {image_size} {channels} "
         f"{spec}")
  out = resolve_cache_dir(key, cache_dir)
  if class_cache.stored_fingerprint(out, name) == key:
    return out
  groups, names, full_name = read_tfds(
      name, data_dir, image_size=image_size, channels=channels, split=split,
      progress=progress)
  if label_names is not None:
    if not all(n.isdigit() for n in names) and list(names) != list(
        label_names):
      raise ValueError(f"{full_name}'s label names are not the expected "
                       f"ones ({list(names[:3])}... vs "
                       f"{list(label_names[:3])}...).")
    names = list(label_names)
  by_name = {(names[i] if i < len(names) else str(i)): x
             for i, x in groups.items()}
  if isinstance(split_classes, dict):
    parts = {s: list(split_classes[s]) for s in class_cache.SPLITS}
  else:
    parts = folders.split_by_fractions(sorted(by_name), split_classes)
  missing = [c for s in parts.values() for c in s if c not in by_name]
  if missing:
    raise ValueError(f"{full_name} has no images of the classes "
                     f"{', '.join(missing[:5])}{', ...' * (len(missing) > 5)}"
                     f" ({len(missing)} missing).")
  splits = {}
  for s, classes in parts.items():
    per_class = [np.stack(by_name[c]) for c in classes]
    joined = (ragged.from_class_list(per_class) if per_class else
              ragged.RaggedClasses(
                  np.zeros((0, image_size, image_size, channels), np.uint8),
                  np.zeros((0,), np.int32), np.zeros((0,), np.int32)))
    splits[s] = class_cache.ClassSplit(
        joined, np.asarray(classes, dtype=str),
        np.asarray([f"{full_name}:{c}" for c, x in zip(classes, per_class)
                    for _ in x], dtype=str))
  class_cache.write(out, splits, source=f"TFDS {full_name}", fingerprint=key)
  return out


def _load(config, name: str, split_classes, split: Optional[str],
          label_names: Optional[Sequence[str]] = None):
  out = ensure_cache(name, split_classes, config.cache_dir or None,
                     data_dir=config.data_dir or None,
                     image_size=config.image_size, channels=config.channels,
                     split=split, label_names=label_names,
                     progress=bool(config.progress))
  return class_cache.config_splits(config, out, config.dataset)


def _load_tfds_images(config: ml_collections.ConfigDict) -> images_lib.Splits:
  return _load(config, config.tfds_name, tuple(config.split_fractions), None)


def _load_cifar_fs(config: ml_collections.ConfigDict) -> images_lib.Splits:
  return _load(config, "cifar100", CIFAR_FS_SPLIT, "train+test",
               CIFAR100_NAMES)


def _load_fc100(config: ml_collections.ConfigDict) -> images_lib.Splits:
  return _load(config, "cifar100", FC100_SPLIT, "train+test", CIFAR100_NAMES)


def _check_name(config) -> None:
  if not config.tfds_name:
    raise registry.config_error("tfds_name", config.tfds_name,
                                "the 'tfds_images' dataset needs a TFDS "
                                "image-classification dataset's name, e.g. "
                                "--config.tfds_name=cifar10")


TFDS_IMAGES = class_cache.register(
    "tfds_images", "a TFDS image dataset (config.tfds_name), split by class",
    _load_tfds_images, (_check_name, class_cache.check_image_fields,
                        class_cache.check_fractions))
CIFAR_FS = class_cache.register(
    "cifar_fs", "CIFAR-FS (CIFAR-100, 64/16/20 classes)", _load_cifar_fs,
    (class_cache.check_image_fields,))
FC100 = class_cache.register(
    "fc100", "FC100 (CIFAR-100 by superclass, 60/20/20 classes)",
    _load_fc100, (class_cache.check_image_fields,))
