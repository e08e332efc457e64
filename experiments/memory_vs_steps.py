r"""XLA scratch memory of MAML's and iMAML's meta-step against inner steps.

Compiles (does not run) the training meta-step of each algorithm at each
number of inner steps, on the same conv-4 and task shapes, with the inner
loop as a lax.scan and unrolled, and reads XLA's temp bytes of each program
(metalearn.benchmark.memory). Second-order MAML keeps every inner step for
its backward pass; iMAML's implicit gradient needs only the adapted
weights.

Omniglot 5-way 1-shot sizes (configs.base(): conv-4, 64 filters, 32 tasks
per meta-step; 16 compiles, about 12 minutes on 2 busy CPU cores):

  python experiments/memory_vs_steps.py --output_dir=runs/memory_vs_steps

Writes memory_vs_steps.json and memory_vs_steps.md into --output_dir and
prints the table. The numbers belong to the backend that compiled them
(CPU and GPU differ): run it on the machine you report.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from metalearn import configs
from metalearn import host_memory
from metalearn.benchmark import memory
from metalearn.models.conv4 import CONV_IMPLS

_ALGORITHMS = flags.DEFINE_list("algorithms", list(memory.ALGORITHMS),
                                "Names in metalearn.algorithms.")
_INNER_STEPS = flags.DEFINE_list(
    "inner_steps", [str(s) for s in memory.INNER_STEPS], "Inner steps.")
_META_BATCH_SIZE = flags.DEFINE_integer("meta_batch_size", 32,
                                        "Tasks per meta-step.")
_N_WAY = flags.DEFINE_integer("n_way", 5, "Classes per task.")
_K_SHOT = flags.DEFINE_integer("k_shot", 1, "Support examples per class.")
_N_QUERY = flags.DEFINE_integer("n_query", 1, "Query examples per class.")
_FILTERS = flags.DEFINE_integer("filters", 64, "Conv-4 channels.")
_NUM_BLOCKS = flags.DEFINE_integer("num_blocks", 4, "Conv blocks.")
_BATCHING = flags.DEFINE_enum("batching", "vmap", ["vmap", "map"],
                              "vmap or lax.map over the tasks.")
_UNROLL = flags.DEFINE_list(
    "unroll", ["false", "true"],
    "config.unroll values to compile with: false (the inner loop is a "
    "lax.scan), true (unrolled, training's default).")
_REMAT = flags.DEFINE_boolean("remat", False,
                              "jax.checkpoint each inner step.")
_CONV_IMPL = flags.DEFINE_enum(
    "conv_impl", "auto", list(CONV_IMPLS),
    "Conv-4's convolutions (auto: im2col_native on CPU, XLA's on GPU).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/memory_vs_steps",
                                  "Where the JSON and markdown files go.")


def main(argv):
  del argv
  base = configs.base()
  base.update(dict(
      meta_batch_size=_META_BATCH_SIZE.value, n_way=_N_WAY.value,
      k_shot=_K_SHOT.value, n_query=_N_QUERY.value, filters=_FILTERS.value,
      num_blocks=_NUM_BLOCKS.value, batching=_BATCHING.value,
      remat=_REMAT.value, conv_impl=_CONV_IMPL.value))
  unroll = []
  for value in _UNROLL.value:
    if value.lower() not in ("true", "false"):
      raise app.UsageError(f"--unroll: {value!r} is neither true nor false.")
    unroll.append(value.lower() == "true")
  rows = memory.memory_vs_steps(
      _ALGORITHMS.value, [int(s) for s in _INNER_STEPS.value], base,
      unroll=unroll, log=print)
  print(memory.write(rows, _OUTPUT_DIR.value))


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()
  app.run(main)
