r"""Throughput curves: tasks/s and memory against meta-batch and devices.

CPU (about 2 minutes on 2 idle cores; docs/benchmarks.md, "Throughput
curves"):

  python experiments/throughput.py --n_query=1 --output_dir=runs/throughput_cpu

GPU (one host, every GPU): the one-line command in docs/scaling.md
("Throughput curves").

Records, for the library's meta-step on Omniglot-shaped synthetic tasks,
tasks/s, XLA scratch bytes and XLA-counted FLOP/s (as a fraction of a large
matmul's FLOP/s timed in the same run) against (a) the meta-batch size on
one device and (b) the device count at a fixed meta-batch (simulated CPU
devices, one process per count, where there is no accelerator). Writes
results.json, results.md and throughput_meta_batch.png /
throughput_devices.png to ``--output_dir``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from metalearn import cli  # pylint: disable=g-import-not-at-top
from metalearn import host_memory
from metalearn import profiling
from metalearn.benchmark import Workload
from metalearn.benchmark import throughput

_ALGORITHM = flags.DEFINE_string("algorithm", "maml",
                                 "A name of metalearn.algorithms.")
_META_BATCH_SIZES = flags.DEFINE_list(
    "meta_batch_sizes", [str(2**i) for i in range(10)],
    "Meta-batch sizes of the one-device curve (empty: skip it).")
_DEVICE_COUNTS = flags.DEFINE_list(
    "device_counts", ["1", "2", "4"],
    "Device counts of the scaling curve (empty: skip it).")
_DEVICES_META_BATCH = flags.DEFINE_integer(
    "devices_meta_batch", 16, "Meta-batch of the device curve (a multiple of "
    "every count).")
_N_WAY = flags.DEFINE_integer("n_way", 5, "Classes per task.")
_K_SHOT = flags.DEFINE_integer("k_shot", 1, "Support examples per class.")
_N_QUERY = flags.DEFINE_integer("n_query", 15, "Query examples per class.")
_INNER_STEPS = flags.DEFINE_integer("inner_steps", 1, "Inner SGD steps.")
_FILTERS = flags.DEFINE_integer("filters", 16, "Conv-4 channels.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed meta-steps per point.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Meta-steps before timing.")
_MAX_TEMP_GIB = flags.DEFINE_float(
    "max_temp_gib", 8.0, "Skip timing a point whose XLA scratch per device "
    "exceeds this (0: never skip).")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", 2048,
                                    "Side of the reference float32 matmul.")
_SEED = flags.DEFINE_integer("seed", 0, "Parameters, data and tasks.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/throughput",
                                  "Where results and plots go.")


def main(argv):
  del argv

  def run():
    w = Workload()._replace(
        algorithm=_ALGORITHM.value, n_way=_N_WAY.value, k_shot=_K_SHOT.value,
        n_query=_N_QUERY.value, inner_steps=_INNER_STEPS.value,
        filters=_FILTERS.value)
    options = dict(steps=_STEPS.value, warmup=_WARMUP.value,
                   max_temp_bytes=int(_MAX_TEMP_GIB.value * 2**30),
                   seed=_SEED.value)
    env = profiling.environment()
    matmul = throughput.matmul_flops_per_s(_MATMUL_SIZE.value)
    print(f"matmul: {matmul / 1e9:.1f} GFLOP/s", flush=True)
    by_batch = throughput.meta_batch_curve(
        w, [int(s) for s in _META_BATCH_SIZES.value], **options)
    by_devices = throughput.device_curve(
        w._replace(meta_batch_size=_DEVICES_META_BATCH.value),
        [int(c) for c in _DEVICE_COUNTS.value], **options)
    result = {
        "command": " ".join(["python", *sys.argv]), "environment": env,
        "workload": w._asdict(), "options": options,
        "workload_text": (f"{w.algorithm}, conv-4 with {w.filters} filters, "
                          f"{w.n_way}-way {w.k_shot}-shot, {w.n_query} query"
                          f"/class, {w.inner_steps} inner step(s)"),
        "matmul_size": _MATMUL_SIZE.value, "matmul_flops_per_s": matmul,
        "meta_batch": [p._asdict() for p in
                       throughput.with_fraction(by_batch, matmul)],
        "devices": [p._asdict() for p in
                    throughput.with_fraction(by_devices, matmul)],
    }
    for path in throughput.write(result, _OUTPUT_DIR.value):
      print(f"Wrote {path}")
  cli.run_main(run)


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()
  app.run(main)
