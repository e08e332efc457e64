"""XLA scratch memory of a compiled meta-step against the inner steps.

Second-order MAML differentiates through its inner loop, so the backward
pass keeps what every inner step computed: its scratch memory grows with
the inner steps. iMAML (:mod:`metalearn.imaml`) never differentiates its
inner loop; the implicit gradient needs only the adapted weights (conjugate
gradients on Hessian-vector products), so its memory should not grow.
Measured on CPU (XLA's buffer assignment), it does not grow when the inner
loop is a ``lax.scan`` (``unroll=False``); unrolled (``unroll=True``,
training's default) XLA keeps buffers of every inner step and it grows,
more slowly than MAML's. :func:`memory_vs_steps` compiles both ways.

:func:`memory_vs_steps` compiles the meta-step that training runs
(:func:`metalearn.build.step_builder`, on the ``synthetic`` Omniglot-shaped
dataset) for each algorithm and number of inner steps, all else equal, and
reads XLA's temp bytes from the compiled program's memory analysis
(:func:`metalearn.profiling.compiled_temp_bytes`). Nothing runs and nothing
is timed (compile seconds are reported as they come): the numbers are
XLA's buffer assignment for the backend it compiled for, so CPU and GPU
numbers differ.
"""

import json
import os
import time
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import ml_collections

from metalearn import build
from metalearn import configs
from metalearn import profiling
from metalearn.models import resolve_conv_impl

ALGORITHMS = ("maml", "imaml")
INNER_STEPS = (5, 10, 20, 40)
JSON_FILE = "memory_vs_steps.json"
MARKDOWN_FILE = "memory_vs_steps.md"
# The config fields a row records (the sizes and the memory switches).
SIZE_FIELDS = ("model", "filters", "num_blocks", "n_way", "k_shot", "n_query",
               "meta_batch_size", "batching", "unroll", "remat", "conv_impl",
               "compute_dtype", "imaml_cg_steps")


class MemoryRow(NamedTuple):
  """One compiled meta-step.

  Attributes:
    algorithm: a name of :data:`metalearn.algorithms.ALGORITHMS`.
    inner_steps: the inner steps of the step.
    xla_temp_bytes: XLA's scratch bytes of the program (None if the
      backend does not report it).
    compile_s: seconds the compile took.
    sizes: the config's :data:`SIZE_FIELDS`, ``{field: value}``
      (``conv_impl`` as :func:`metalearn.models.resolve_conv_impl`
      resolves it for the backend).
    platform, device_kind: what it was compiled for.
    error: why it failed, else empty.
  """
  algorithm: str
  inner_steps: int
  xla_temp_bytes: Optional[int]
  compile_s: Optional[float]
  sizes: dict
  platform: str
  device_kind: str
  error: str = ""


def step_config(algorithm: str, inner_steps: int,
                base: Optional[ml_collections.ConfigDict] = None
               ) -> ml_collections.ConfigDict:
  """``base`` (default :func:`metalearn.configs.base`) running
  ``algorithm`` with ``inner_steps`` on the ``synthetic`` dataset."""
  c = ml_collections.ConfigDict((base or configs.base()).to_dict())
  c = configs.for_algorithm(algorithm, c)
  c.dataset = "synthetic"
  c.inner_steps = c.eval_inner_steps = inner_steps
  c.val_tasks, c.test_tasks = 0, 1
  c.eval_every = 0
  c.progress = False
  return c


def compile_step(config: ml_collections.ConfigDict):
  """``(compiled meta-step, compile seconds)`` of ``config``'s algorithm,
  in its last phase (for MAML++: second order, last-step loss)."""
  exp = build.build_experiment(config)
  state = build.initial_state(config, exp)
  step = build.step_builder(config, exp)(
      exp.plan.phase_at(exp.plan.meta_steps - 1), 1)
  start = time.perf_counter()
  compiled = step.lower(state, exp.train_data,
                        jax.random.key(config.seed)).compile()
  return compiled, time.perf_counter() - start


def measure(algorithm: str, inner_steps: int,
            base: Optional[ml_collections.ConfigDict] = None) -> MemoryRow:
  """Compiles one meta-step and reads its XLA temp bytes; a failure
  becomes a row with ``error`` set."""
  config = step_config(algorithm, inner_steps, base)
  device = jax.devices()[0]
  sizes = {f: _plain(config[f]) for f in SIZE_FIELDS}
  sizes["conv_impl"] = resolve_conv_impl(config.conv_impl)
  row = MemoryRow(algorithm, inner_steps, None, None, sizes,
                  device.platform, device.device_kind)
  try:
    compiled, seconds = compile_step(config)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return row._replace(error=f"{type(e).__name__}: {first}")
  return row._replace(xla_temp_bytes=profiling.compiled_temp_bytes(compiled),
                      compile_s=seconds)


def _plain(value):
  return list(value) if isinstance(value, tuple) else value


def memory_vs_steps(algorithms: Sequence[str] = ALGORITHMS,
                    inner_steps: Sequence[int] = INNER_STEPS,
                    base: Optional[ml_collections.ConfigDict] = None,
                    unroll: Sequence[bool] = (False, True),
                    log: Optional[Callable[[str], None]] = None
                   ) -> list[MemoryRow]:
  """Measures every algorithm at every number of inner steps.

  Args:
    algorithms: names of :data:`metalearn.algorithms.ALGORITHMS`.
    inner_steps: the inner steps to compile for, each >= 1.
    base: the config every row starts from (model, sizes, ``batching``,
      ``remat``, ``conv_impl``, ...); default :func:`metalearn.configs.base`
      (conv-4 with 64 filters, 5-way 1-shot, 32 tasks per meta-step).
    unroll: the values of ``config.unroll`` to compile with (``False``: the
      inner loop is a ``lax.scan``; ``True``: unrolled, as training runs).
    log: called with a one-line summary after each row.

  Returns:
    One :class:`MemoryRow` per (unroll, algorithm, inner steps), in that
    order.
  """
  base = base or configs.base()
  rows = []
  for unrolled in unroll:
    variant = ml_collections.ConfigDict(base.to_dict())
    variant.unroll = bool(unrolled)
    for algorithm in algorithms:
      for steps in inner_steps:
        rows.append(measure(algorithm, steps, variant))
        if log:
          log(_line(rows[-1]))
  return rows


def _column(row: MemoryRow) -> str:
  return f"{row.algorithm} ({'unrolled' if row.sizes['unroll'] else 'scan'})"


def _mib(n: Optional[int]) -> str:
  return "-" if n is None else f"{n / 2**20:.2f}"


def _line(row: MemoryRow) -> str:
  if row.error:
    return f"{_column(row)} inner_steps={row.inner_steps}: {row.error}"
  return (f"{_column(row)} inner_steps={row.inner_steps}: XLA temp "
          f"{_mib(row.xla_temp_bytes)} MiB (compile {row.compile_s:.1f} s)")


def growth(rows: Sequence[MemoryRow], algorithm: str,
           unroll: bool = False) -> Optional[float]:
  """The algorithm's temp bytes at its most inner steps over those at its
  fewest, compiled with ``unroll`` (None if either is missing or zero)."""
  mine = sorted((r.inner_steps, r.xla_temp_bytes) for r in rows
                if r.algorithm == algorithm and r.xla_temp_bytes
                and bool(r.sizes["unroll"]) == bool(unroll))
  if len(mine) < 2 or not mine[0][1]:
    return None
  return mine[-1][1] / mine[0][1]


def markdown_table(rows: Sequence[MemoryRow]) -> str:
  """Inner steps down, algorithms (scan or unrolled) across: XLA temp MiB
  (and the ratio to that column's fewest steps)."""
  algorithms = list(dict.fromkeys(_column(r) for r in rows))
  steps = sorted({r.inner_steps for r in rows})
  cell = {(_column(r), r.inner_steps): r for r in rows}
  first = {a: next((cell[a, s].xla_temp_bytes for s in steps
                    if (a, s) in cell and cell[a, s].xla_temp_bytes), None)
           for a in algorithms}
  lines = ["| inner steps | " + " | ".join(
      f"{a}: XLA temp MiB (x fewest)" for a in algorithms) + " |",
           "|---:|" + "---:|" * len(algorithms)]
  for s in steps:
    cells = []
    for a in algorithms:
      r = cell.get((a, s))
      if r is None or r.error or r.xla_temp_bytes is None:
        cells.append("error" if r is not None and r.error else "-")
      else:
        ratio = (f" ({r.xla_temp_bytes / first[a]:.2f}x)" if first[a]
                 else "")
        cells.append(_mib(r.xla_temp_bytes) + ratio)
    lines.append(f"| {s} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write(rows: Sequence[MemoryRow], output_dir: str) -> str:
  """Writes :data:`JSON_FILE` and :data:`MARKDOWN_FILE` into
  ``output_dir``; returns the markdown (with what was compiled)."""
  os.makedirs(output_dir, exist_ok=True)
  record = {"jax_version": jax.__version__,
            "rows": [r._asdict() for r in rows]}
  with open(os.path.join(output_dir, JSON_FILE), "w") as f:
    json.dump(record, f, indent=2)
  head = rows[0] if rows else None
  about = ("" if head is None else
           f"{head.platform} ({head.device_kind}), jax {jax.__version__}, "
           + ", ".join(f"{k}={v}" for k, v in head.sizes.items()
                       if k != "unroll") + "\n\n")
  text = about + markdown_table(rows) + "\n"
  errors = [_line(r) for r in rows if r.error]
  if errors:
    text += "\n" + "\n".join(f"- {e}" for e in errors) + "\n"
  with open(os.path.join(output_dir, MARKDOWN_FILE), "w") as f:
    f.write(text)
  return text
