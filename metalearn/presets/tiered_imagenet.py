"""MAML, FOMAML and MAML++ on tiered-ImageNet (Ren et al. 2018).

Run (ALGORITHM: maml, fomaml or mamlpp, or any other name in
metalearn.algorithms; SETTING: 5w1s or 5w5s) with DIR a tree of your files,
``DIR/train/<class>/*.jpg`` (351 classes), ``DIR/val/`` (97) and
``DIR/test/`` (160) (nothing is downloaded; docs/data.md). The first run
decodes every image once into metalearn's cache:
  python experiments/train.py \
      --config=experiments/configs/tiered_imagenet.py:maml:5w1s \
      --workdir=runs/tiered_imagenet_maml_5w1s --config.data_dir=DIR

tiered-ImageNet: 608 ImageNet classes in 34 categories, split by category
(351 / 97 / 160 classes), at 84x84 RGB. The whole cache sits on the device:
about 9.5 GB for the train split. The training settings are those of
``mini_imagenet.py`` (conv-4 with 32 filters, 5 inner steps at 0.01 and 10
at test for MAML; Antoniou et al.'s for MAML++), with no rotations.

Paper accuracies (5-way, %): ``PAPER_ACCURACY``, MAML on tiered-ImageNet
as Liu et al. 2019 (TPN) report it and later tables (Lee et al. 2019,
MetaOptNet) cite it. Measured: not yet run.
"""

from metalearn.presets import mini_imagenet

# algorithm -> setting -> (accuracy %, ± as reported): MAML on
# tiered-ImageNet as reported by Liu et al. 2019.
PAPER_ACCURACY = {
    "maml": {"5w1s": (51.67, 1.81), "5w5s": (70.30, 1.75)},
}


def get_config(arg: str = "maml:5w1s"):
  """``ALGORITHM:SETTING``, e.g. ``maml:5w1s``, ``mamlpp:5w5s``."""
  c = mini_imagenet.get_config(arg)
  c.dataset = "tiered_imagenet"
  c.image_size, c.channels = 84, 3
  c.description = mini_imagenet.describe("tiered-ImageNet", arg, PAPER_ACCURACY)
  return c
