"""MAML, FOMAML and MAML++ on FC100 (Oreshkin et al. 2018).

Run (ALGORITHM: maml, fomaml or mamlpp, or any other name in
metalearn.algorithms; SETTING: 5w1s or 5w5s). The first run reads CIFAR-100
through tensorflow-datasets (downloading and preparing it in
``--config.data_dir``, else $TFDS_DATA_DIR or ~/tensorflow_datasets, if it
is not there yet) into metalearn's cache (docs/data.md):
  python experiments/train.py \
      --config=experiments/configs/fc100.py:maml:5w1s \
      --workdir=runs/fc100_maml_5w1s

FC100: the 100 CIFAR-100 classes, 600 32x32 RGB images each (its train and
test splits together), split by superclass as in Oreshkin et al. 2018: 12
train / 4 val / 4 test superclasses, i.e. 60 / 20 / 20 classes
(``metalearn.data.tfds_images.FC100_SPLIT``). The training settings are
those of ``cifar_fs.py`` (``mini_imagenet.py``'s at 32x32, no rotations).

Paper accuracies: not reported. ``PAPER_ACCURACY`` is empty: no MAML
number on FC100 could be checked against its paper, and none is guessed.
Measured: not yet run.
"""

from metalearn.presets import cifar_fs

# algorithm -> setting -> (accuracy %, ± as reported): not reported.
PAPER_ACCURACY = {}


def get_config(arg: str = "maml:5w1s"):
  """``ALGORITHM:SETTING``, e.g. ``maml:5w1s``, ``mamlpp:5w5s``."""
  c = cifar_fs.get_config(arg)
  algorithm, setting = arg.partition(":")[::2]
  c.dataset = "fc100"
  c.description = (f"FC100 {setting}, {algorithm}, mini-ImageNet settings; "
                   "paper: not reported")
  return c
