r"""Compares MAML, FOMAML, MAML++ and first-order MAML++ on identical tasks.

  python experiments/compare.py --output_dir=runs/compare
  python experiments/compare.py --full --output_dir=runs/compare_full
  python experiments/compare.py --protocol=experiments/configs/cpu_small.py \
      --algorithms=maml,fomaml --output_dir=runs/compare_cpu_small

``--protocol=writeup`` (default): Omniglot 5-way 1-shot, a fixed pool of 200
training tasks (TFDS train split), 100 test tasks (TFDS test split), inner
SGD lr 0.01 x 5 steps, outer Adam lr 0.001, 50 passes over the pool. Without
an accelerator (and without ``--full``) the sizes are shrunk so that all four
algorithms finish in minutes on a 2-core CPU; the header says what shrank.
Size flags override either. Writes report.md, results.json and PNG plots to
``--output_dir``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from metalearn import compare

_PROTOCOL = flags.DEFINE_string(
    "protocol", "writeup", "'writeup' or a training config file[:arg] "
    "(experiments/configs/*.py); its algorithm fields are ignored.")
_ALGORITHMS = flags.DEFINE_list(
    "algorithms", list(compare.ALGORITHMS),
    f"Subset of {', '.join(compare.ALGORITHMS)}, run in this order.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where report.md, results.json, PNGs go.")
_FULL = flags.DEFINE_bool(
    "full", None, "Full-size protocol. Default: only with an accelerator.")
_ISOLATE = flags.DEFINE_bool(
    "isolate", False, "One process per algorithm (its own memory peak).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Progress bars.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Omniglot cache dir.")
_SIZES = {
    "n_way": "Classes per task.",
    "k_shot": "Support images per class.",
    "n_query": "Query images per class, training tasks.",
    "eval_n_query": "Query images per class, test tasks.",
    "inner_steps": "Inner SGD steps while training.",
    "eval_inner_steps": "Inner SGD steps on the test tasks.",
    "meta_batch_size": "Tasks per meta-iteration.",
    "filters": "Conv-4 channels.",
    "train_tasks": "Fixed training pool size (0: fresh tasks).",
    "passes": "Passes over the training pool.",
    "num_iterations": "Meta-iterations (overrides passes).",
    "test_tasks": "Fixed test tasks.",
    "msl_epochs": "MAML++ multi-step-loss annealing epochs.",
    "eval_chunk_size": "Test tasks per compiled evaluation call.",
    "seed": "Seed of pools, weights and task draws.",
}
_SIZE_FLAGS = {k: flags.DEFINE_integer(k, None, v) for k, v in _SIZES.items()}
_INNER_LR = flags.DEFINE_float("inner_lr", None, "Inner SGD learning rate.")
_OUTER_LR = flags.DEFINE_float("outer_lr", None, "Outer Adam learning rate.")
_BATCHING = flags.DEFINE_enum(
    "batching", None, ["map", "vmap"],
    "Over tasks; default map on CPU (less memory there), vmap otherwise.")
_MODEL = flags.DEFINE_enum("model", None, ["conv4", "mlp"],
                           "conv4, or mlp for a quick smoke test.")
flags.mark_flag_as_required("output_dir")


def main(argv):
  del argv
  overrides = {k: f.value for k, f in _SIZE_FLAGS.items()}
  overrides.update(inner_lr=_INNER_LR.value, outer_lr=_OUTER_LR.value,
                   batching=_BATCHING.value, model=_MODEL.value)
  protocol, shrunk = compare.resolve_protocol(
      _PROTOCOL.value, full=_FULL.value, overrides=overrides)
  compare.run_comparison(
      protocol, _ALGORITHMS.value, _OUTPUT_DIR.value, shrunk=shrunk,
      isolate=_ISOLATE.value, progress=_PROGRESS.value,
      cache_dir=_CACHE_DIR.value, command=" ".join(sys.argv))


if __name__ == "__main__":
  app.run(main)
