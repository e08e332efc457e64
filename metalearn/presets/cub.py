"""MAML, FOMAML and MAML++ on CUB-200-2011 (Chen et al. 2019's split).

Run (ALGORITHM: maml, fomaml or mamlpp, or any other name in
metalearn.algorithms; SETTING: 5w1s or 5w5s) with DIR the folder holding
the extracted ``CUB_200_2011/`` (nothing is downloaded; docs/data.md). The
first run decodes the 11,788 photos once into metalearn's cache:
  python experiments/train.py \
      --config=experiments/configs/cub.py:maml:5w1s \
      --workdir=runs/cub_maml_5w1s --config.data_dir=DIR

CUB-200-2011: 200 bird species, about 60 photos each, 100 train / 50 val /
50 test classes in the split of Chen et al. 2019
(``metalearn.data.cub.chen_split``), resized to 84x84 RGB (the aspect ratio
is not kept). The training settings are those of ``mini_imagenet.py``
(conv-4 with 32 filters, 5 inner steps at 0.01 and 10 at test for MAML;
Antoniou et al.'s for MAML++), with no rotations.

Paper accuracies (5-way, %): ``PAPER_ACCURACY``, MAML with a conv-4 on
this split as Chen et al. 2019 report it (their own reimplementation, with
their augmentation). Measured: not yet run.
"""

from metalearn.presets import mini_imagenet

# algorithm -> setting -> (accuracy %, ± as reported): MAML (conv-4) on
# CUB as reported by Chen et al. 2019, "A Closer Look at Few-shot
# Classification".
PAPER_ACCURACY = {
    "maml": {"5w1s": (55.92, 0.95), "5w5s": (72.09, 0.76)},
}


def get_config(arg: str = "maml:5w1s"):
  """``ALGORITHM:SETTING``, e.g. ``maml:5w1s``, ``mamlpp:5w5s``."""
  c = mini_imagenet.get_config(arg)
  c.dataset = "cub"
  c.image_size, c.channels = 84, 3
  c.description = mini_imagenet.describe("CUB-200-2011", arg, PAPER_ACCURACY)
  return c
