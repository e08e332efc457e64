r"""The im2col windows alone: XLA's against the C++ custom call, per layer.

Times metalearn.models.im2col.windows (XLA: pads, slices, a concatenation)
and metalearn.models.native_windows.windows (one C++ loop) on the input of
each of conv-4's layers for 28x28x1 images, and beside them the im2col matmul
that reads the windows (for scale). Each is a compiled program; the median
of --repeats calls after one warm-up.

  python experiments/windows_benchmark.py --images=320 --filters=32 \
    --output_dir=runs/windows

320 images are workload A's meta-batch (4 tasks of 5 support and 75 query
images). Writes windows.json and windows.md into --output_dir and prints
the table.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax

from metalearn import host_memory
from metalearn.benchmark import breakdown
from metalearn.models import im2col
from metalearn.models import native_windows

_IMAGES = flags.DEFINE_integer("images", 320, "Images per call.", lower_bound=1)
_FILTERS = flags.DEFINE_integer("filters", 32, "Conv-4 channels.",
                                lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per program.",
                                lower_bound=1)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/windows",
                                  "Where the JSON and markdown files go.")


def _layer_inputs(images: int, filters: int) -> list[tuple[int, ...]]:
  """The input shape of each conv-4 layer on 28x28x1 images."""
  return [(images, 28, 28, 1)] + [(images, s, s, filters) for s in (14, 7, 3)]


def _row(shape: tuple[int, ...], filters: int, repeats: int) -> dict:
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (9 * shape[-1], filters))
  times = {}
  for name, fn, args in [
      ("xla_ms", im2col.windows, (x,)),
      ("native_ms", native_windows.windows, (x,)),
      ("matmul_ms", lambda w, k: w @ k, (im2col.windows(x), kernel))]:
    part = breakdown.time_program(breakdown.Program(name, jax.jit(fn), args),
                                  warmup=1, repeats=repeats)
    times[name] = 1e3 * part.seconds
  return {"shape": list(shape), **times,
          "xla_over_native": times["xla_ms"] / times["native_ms"]}


def _markdown(rows: list[dict]) -> str:
  lines = ["| layer input | XLA windows ms | C++ windows ms | XLA / C++ | "
           "matmul ms |", "|---|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['xla_ms']:.2f} | "
                 f"{r['native_ms']:.2f} | {r['xla_over_native']:.2f}x | "
                 f"{r['matmul_ms']:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  reason = native_windows.unavailable_reason()
  if reason:
    raise app.UsageError(f"the C++ windows cannot be built here: {reason}")
  rows = [_row(s, _FILTERS.value, _REPEATS.value)
          for s in _layer_inputs(_IMAGES.value, _FILTERS.value)]
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  with open(os.path.join(_OUTPUT_DIR.value, "windows.json"), "w") as f:
    json.dump(rows, f, indent=1)
  table = _markdown(rows)
  with open(os.path.join(_OUTPUT_DIR.value, "windows.md"), "w") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()
  app.run(main)
