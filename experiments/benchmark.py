r"""Times meta-steps of a plain step against the tuned library path.

CPU smoke size (about a minute on a 2-core machine):

  python experiments/benchmark.py --output_dir=runs/benchmark

Omniglot-sized on a GPU (conv-4, 64 filters; experiments/gpu_benchmark.sh
runs the whole GPU grid):

  python experiments/benchmark.py --algorithms=maml,fomaml \
      --meta_batch_sizes=32,128 --inner_steps=1 --filters=64 \
      --modes=plain,tuned,tuned+unroll,tuned+remat --output_dir=$OUT

ResNet-12 MAML vs FOMAML, reduced widths, on a CPU (about 4 minutes on 2
idle cores; docs/benchmarks.md, "ResNet-12: MAML against FOMAML"):

  python experiments/benchmark.py --model=resnet12 --widths=16,32,64,128 \
      --image_size=32 --channels=3 --algorithms=maml,fomaml \
      --meta_batch_sizes=2 --n_query=5 --inner_steps=2 \
      --modes=tuned,tuned+remat,tuned+blockremat --warmup=1 --chunks=3 \
      --steps_per_chunk=2 --output_dir=runs/benchmark_resnet12

Side by side with a PyTorch peer (MAML as a PyTorch user writes it,
``metalearn/benchmark/torch_peer.py``, run with another interpreter that has
torch; docs/performance.md, "Measuring against PyTorch"): with
``--peer_python``, each workload is also timed by the peer in the same run,
and every row gets the peer's tasks/s and metalearn / PyTorch:

  python3 -m venv /tmp/torch-peer
  /tmp/torch-peer/bin/pip install "torch==2.13.0+cpu"
  python experiments/benchmark.py --algorithms=maml,fomaml --filters=32 \
      --inner_steps=5 --modes=tuned --peer_python=/tmp/torch-peer/bin/python

On a machine whose speed drifts, ``--interleave`` compiles every mode of a
workload in one process and times their chunks in turn (one chunk of each
mode, ``--chunks`` times), so that a slow stretch falls on every mode alike:
  python experiments/benchmark.py --algorithms=maml --filters=32 \
      --inner_steps=5 --modes=tuned,tuned+unroll --chunks=10 --interleave

Modes are ``plain`` or ``tuned`` with ``+``-joined knobs (``unroll``,
``remat``, ``bf16``, ``shard``, ``map``, ``mm``, ``xla``, ``everyq``,
``spcN``, ``blockremat``); see ``metalearn.benchmark.parse_mode``.
Algorithms are the names in ``metalearn.algorithms``. ``+shard`` splits the
tasks over every device (simulate 4 on a CPU with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``). Every ``speedup`` is
tasks/s over the ``plain`` row of the same workload in the same run. Writes
``results.jsonl`` and ``results.md`` into ``--output_dir`` and prints the
table.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from metalearn import algorithms
from metalearn import host_memory
from metalearn import benchmark

_ALGORITHMS = flags.DEFINE_list(
    "algorithms", ["maml"], f"Any of {', '.join(algorithms.ALGORITHMS)}.")
_META_BATCH_SIZES = flags.DEFINE_list("meta_batch_sizes", ["4"],
                                      "Tasks per meta-step.")
_N_WAY = flags.DEFINE_list("n_way", ["5"], "Classes per task.")
_K_SHOT = flags.DEFINE_list("k_shot", ["1"], "Support examples per class.")
_N_QUERY = flags.DEFINE_list("n_query", ["15"], "Query examples per class.")
_INNER_STEPS = flags.DEFINE_list("inner_steps", ["1"], "Inner SGD steps.")
_FILTERS = flags.DEFINE_integer("filters", 16,
                                "Conv-4 channels (64 is Omniglot-sized).")
_NUM_BLOCKS = flags.DEFINE_integer("num_blocks", 4,
                                   "Conv blocks (fewer: faster to compile).")
_MODEL = flags.DEFINE_enum("model", "conv4", ["conv4", "resnet12"],
                           "conv4 (--filters, --num_blocks) or resnet12 "
                           "(--widths).")
_WIDTHS = flags.DEFINE_list("widths", ["64", "160", "320", "640"],
                            "ResNet-12 channels per residual block.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 28,
                                   "Height and width of the square images.")
_CHANNELS = flags.DEFINE_integer("channels", 1,
                                 "1: binary images; 3: colour uint8 images.")
_MSL_EPOCHS = flags.DEFINE_integer(
    "msl_epochs", 10, "Epochs over which MAML++'s multi-step loss anneals.")
_STEPS_PER_EPOCH = flags.DEFINE_integer(
    "steps_per_epoch", 500, "Meta-steps per epoch of that schedule.")
_MODES = flags.DEFINE_list("modes", ["plain", "tuned"],
                           "plain, tuned, tuned+remat, tuned+spc4, ...")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Meta-steps before timing.")
_CHUNKS = flags.DEFINE_integer("chunks", 3, "Timed chunks per row.")
_STEPS_PER_CHUNK = flags.DEFINE_integer("steps_per_chunk", 2,
                                        "Meta-steps per chunk.")
_ISOLATE = flags.DEFINE_boolean(
    "isolate", True, "One process per row, so peak memory is the row's own.")
_INTERLEAVE = flags.DEFINE_boolean(
    "interleave", False, "Compile every mode of a workload in one process "
    "and time their chunks in turn, so that the machine's drift falls on "
    "every mode alike (rows then share one memory peak).")
_APPEND = flags.DEFINE_boolean("append", False,
                               "Append to an existing results.jsonl.")
_PEER_PYTHON = flags.DEFINE_string(
    "peer_python", "", "A Python interpreter that has torch: each workload is "
    "also timed by the PyTorch peer in the same run. Empty: no peer.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of parameters, data, tasks.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/benchmark",
                                  "Where results.jsonl and results.md go.")


def main(argv):
  del argv
  ints = lambda values: [int(v) for v in values]  # noqa: E731
  workloads = benchmark.grid(
      _ALGORITHMS.value, ints(_META_BATCH_SIZES.value), ints(_N_WAY.value),
      ints(_K_SHOT.value), ints(_N_QUERY.value), ints(_INNER_STEPS.value),
      filters=_FILTERS.value, num_blocks=_NUM_BLOCKS.value,
      msl_epochs=_MSL_EPOCHS.value, steps_per_epoch=_STEPS_PER_EPOCH.value,
      model=_MODEL.value, widths=tuple(ints(_WIDTHS.value)),
      image_size=_IMAGE_SIZE.value, channels=_CHANNELS.value)
  modes = [benchmark.parse_mode(m) for m in _MODES.value]
  timing = benchmark.Timing(_WARMUP.value, _CHUNKS.value,
                             _STEPS_PER_CHUNK.value)
  if _PEER_PYTHON.value:
    try:
      print("PyTorch peer: torch",
            benchmark.check_peer_python(_PEER_PYTHON.value))
    except ValueError as e:
      sys.exit(f"error: {e}")
  rows = benchmark.run_grid(workloads, modes, timing, isolate=_ISOLATE.value,
                            interleave=_INTERLEAVE.value, seed=_SEED.value,
                            peer_python=_PEER_PYTHON.value, log=print)
  print(benchmark.write_results(rows, _OUTPUT_DIR.value,
                                append=_APPEND.value))


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()
  app.run(main)
