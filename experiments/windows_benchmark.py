r"""The im2col windows and the convolutions, per layer: XLA's windows
against the C++ ones, and the windowed convolution against the direct one.

Times, on the input of each of conv-4's layers for 28x28x1 images:
metalearn.models.im2col.windows (XLA: pads, slices, a concatenation) and
metalearn.models.native_windows.windows (one C++ loop), and beside them the
im2col matmul that reads the windows (for scale); then, with the images
split into --tasks tasks that each convolve with a kernel of their own
(vmap), the convolution and its kernel gradient as windows and a matmul
(``conv_impl="im2col_native"``) and as the direct C++ loops
(``direct_native``, metalearn.models.native_conv). Each is a compiled
program; the median of --repeats calls after one warm-up.

  python experiments/windows_benchmark.py --images=320 --tasks=4 \
    --filters=32 --output_dir=runs/windows

320 images in 4 tasks are workload A's meta-batch (4 tasks of 5 support and
75 query images). Writes windows.json and windows.md into --output_dir and
prints the table.
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
from metalearn.models import native_conv
from metalearn.models import native_windows

_IMAGES = flags.DEFINE_integer("images", 320, "Images per call.", lower_bound=1)
_TASKS = flags.DEFINE_integer(
    "tasks", 4, "Tasks the images are split into for the convolutions, each "
    "with its own kernel; must divide --images.", lower_bound=1)
_FILTERS = flags.DEFINE_integer("filters", 32, "Conv-4 channels.",
                                lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per program.",
                                lower_bound=1)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/windows",
                                  "Where the JSON and markdown files go.")


def _layer_inputs(images: int, filters: int) -> list[tuple[int, ...]]:
  """The input shape of each conv-4 layer on 28x28x1 images."""
  return [(images, 28, 28, 1)] + [(images, s, s, filters) for s in (14, 7, 3)]


def _time(name: str, fn, args, repeats: int) -> float:
  part = breakdown.time_program(breakdown.Program(name, jax.jit(fn), args),
                                warmup=1, repeats=repeats)
  return 1e3 * part.seconds


def _row(shape: tuple[int, ...], tasks: int, filters: int,
         repeats: int) -> dict:
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (9 * shape[-1], filters))
  times = {name: _time(name, fn, args, repeats) for name, fn, args in [
      ("xla_ms", im2col.windows, (x,)),
      ("native_ms", native_windows.windows, (x,)),
      ("matmul_ms", lambda w, k: w @ k, (im2col.windows(x), kernel))]}
  # Per task: [tasks, images / tasks, H, W, C] with a kernel each.
  xs = x.reshape(tasks, -1, *shape[1:])
  kernels = kernel.reshape(1, 3, 3, shape[-1], filters).repeat(tasks, 0)
  grads = jax.random.normal(jax.random.key(2), (*xs.shape[:-1], filters))
  times.update({name: _time(name, jax.vmap(fn), args, repeats)
                for name, fn, args in [
      ("im2col_conv_ms", lambda x, k: im2col.conv3x3(x, k, "windows"),
       (xs, kernels)),
      ("direct_conv_ms", native_conv.conv, (xs, kernels)),
      ("im2col_grad_ms", lambda x, g: im2col.kernel_grad(x, g, "windows"),
       (xs, grads)),
      ("direct_grad_ms", native_conv.kernel_grad, (xs, grads))]})
  return {"shape": list(shape), "tasks": tasks, **times,
          "xla_over_native": times["xla_ms"] / times["native_ms"],
          "conv_im2col_over_direct":
              times["im2col_conv_ms"] / times["direct_conv_ms"],
          "grad_im2col_over_direct":
              times["im2col_grad_ms"] / times["direct_grad_ms"]}


def _markdown(rows: list[dict]) -> str:
  lines = ["| layer input | XLA windows ms | C++ windows ms | XLA / C++ | "
           "matmul ms | conv: windows + matmul ms | conv: direct ms | "
           "kernel grad: windows + matmul ms | kernel grad: direct ms |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['xla_ms']:.2f} | "
                 f"{r['native_ms']:.2f} | {r['xla_over_native']:.2f}x | "
                 f"{r['matmul_ms']:.2f} | {r['im2col_conv_ms']:.2f} | "
                 f"{r['direct_conv_ms']:.2f} | {r['im2col_grad_ms']:.2f} | "
                 f"{r['direct_grad_ms']:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  reason = native_windows.unavailable_reason()
  if reason:
    raise app.UsageError(f"the C++ kernels cannot be built here: {reason}")
  if _IMAGES.value % _TASKS.value:
    raise app.UsageError(f"--tasks={_TASKS.value} must divide "
                         f"--images={_IMAGES.value}.")
  rows = [_row(s, _TASKS.value, _FILTERS.value, _REPEATS.value)
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
