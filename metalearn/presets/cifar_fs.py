"""MAML, FOMAML and MAML++ on CIFAR-FS (Bertinetto et al. 2019).

Run (ALGORITHM: maml, fomaml or mamlpp, or any other name in
metalearn.algorithms; SETTING: 5w1s or 5w5s). The first run reads CIFAR-100
through tensorflow-datasets (downloading and preparing it in
``--config.data_dir``, else $TFDS_DATA_DIR or ~/tensorflow_datasets, if it
is not there yet) into metalearn's cache (docs/data.md):
  python experiments/train.py \
      --config=experiments/configs/cifar_fs.py:maml:5w1s \
      --workdir=runs/cifar_fs_maml_5w1s

CIFAR-FS: the 100 CIFAR-100 classes, 600 32x32 RGB images each (its train
and test splits together), 64 train / 16 val / 20 test classes in the split
of Bertinetto et al. 2019 (``metalearn.data.tfds_images.CIFAR_FS_SPLIT``).
The training settings are those of ``mini_imagenet.py`` (conv-4 with 32
filters, 5 inner steps at 0.01 and 10 at test for MAML; Antoniou et al.'s
for MAML++), at 32x32 instead of 84x84, with no rotations.

Paper accuracies (5-way, %): ``PAPER_ACCURACY``. Measured: not yet run.
"""

from metalearn.presets import mini_imagenet

# algorithm -> setting -> (accuracy %, ± as reported): MAML on CIFAR-FS
# as reported by Bertinetto et al. 2019.
PAPER_ACCURACY = {
    "maml": {"5w1s": (58.9, 1.9), "5w5s": (71.5, 1.0)},
}


def get_config(arg: str = "maml:5w1s"):
  """``ALGORITHM:SETTING``, e.g. ``maml:5w1s``, ``mamlpp:5w5s``."""
  c = mini_imagenet.get_config(arg)
  c.dataset = "cifar_fs"
  c.image_size, c.channels = 32, 3
  c.description = mini_imagenet.describe("CIFAR-FS", arg, PAPER_ACCURACY)
  return c
