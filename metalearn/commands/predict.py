r"""Adapts a trained run to labelled images and classifies new ones.

  metalearn-predict --workdir=runs/maml_5w1s \
      --support_dir=my_support --query_dir=my_queries

``--support_dir`` holds one folder of images per class (its name is the
class; any depth, any format Pillow reads), ``--query_dir`` the images to
classify. Writes ``predictions.csv`` and ``predictions.png`` to
``--output_dir`` (default ``WORKDIR/predictions``). See
:mod:`metalearn.predict` (prototype head for another number of classes,
batch-norm statistics) and :mod:`metalearn.predict_files`.
"""

from absl import app
from absl import flags

from metalearn import cli
from metalearn import predict_files

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run.")
_SUPPORT_DIR = flags.DEFINE_string("support_dir", None,
                                   "One folder of labelled images per class.")
_QUERY_DIR = flags.DEFINE_string("query_dir", None, "Images to classify.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Default: WORKDIR/predictions.")
_INNER_STEPS = flags.DEFINE_integer(
    "inner_steps", None, "Inner steps on the support set (default: the "
    "run's eval_inner_steps; 0: none).", lower_bound=0)
_WHICH = flags.DEFINE_enum("which", "best", ["best", "latest"],
                           "Which checkpoint of the run.")
_BATCH_NORM = flags.DEFINE_enum(
    "batch_norm", "support", ["support", "query"],
    "Batch-norm statistics: each query with the support set, or all queries "
    "as one batch.")
_INVERT = flags.DEFINE_bool("invert", False, "Use 255 - pixel (e.g. black "
                            "ink on white for a run trained with ink = 1).")
flags.mark_flags_as_required(["workdir", "support_dir", "query_dir"])


def main(argv):
  del argv

  def run():
    prediction, out = predict_files.predict_folders(
        _WORKDIR.value, _SUPPORT_DIR.value, _QUERY_DIR.value,
        _OUTPUT_DIR.value, inner_steps=_INNER_STEPS.value,
        which=_WHICH.value, batch_norm=_BATCH_NORM.value,
        invert=_INVERT.value)
    print(f"{len(prediction.labels)} queries, {len(prediction.class_names)} "
          f"classes ({prediction.head} head): {out / 'predictions.csv'}, "
          f"{out / 'predictions.png'}")
  cli.run_main(run)


def run():
  """The ``metalearn-predict`` console command."""
  app.run(main)
