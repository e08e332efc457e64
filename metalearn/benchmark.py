"""Meta-step throughput, compile time and memory: a plain baseline vs tuned.

Each row times one algorithm (``maml``, ``fomaml``, ``mamlpp`` = multi-step
loss + learned per-step per-layer rates + per-step batch norm, or
``mamlpp_first_order``) on Omniglot-shaped synthetic tasks (28x28x1, conv-4)
sampled on the device, run one of two ways:

* ``plain``: :mod:`metalearn.baseline`, a deliberately straightforward
  implementation (``jit`` + ``vmap`` over tasks, Python-loop inner loop,
  float32, XLA convolutions, one meta-step per dispatch, no remat, no
  donation) that shares no code with :mod:`metalearn.core`.
* ``tuned``: :func:`metalearn.step.make_meta_step` (``lax.scan`` over inner
  steps, sampling inside the step, donation; MAML/FOMAML run the query set
  once, after the last step) with the knobs of a mode spec
  ``tuned[+unroll][+remat][+bf16][+shard][+map][+mm|+xla][+spcN]``: unroll
  the scan, ``jax.checkpoint`` each inner step, bfloat16 compute (float32
  master weights), split tasks over all devices, ``lax.map`` over tasks,
  shifted-matmul or XLA convolutions (default: the model's ``auto``), N
  meta-steps per dispatch.

Both compute the same function (the same query losses, tasks and Adam
update), so ``speedup`` (tasks/s over the ``plain`` row of the same workload,
measured in the same run) compares implementations, not arithmetic. Rows are
measured after warm-up over several timed chunks, each ended by
``jax.block_until_ready``; compile time is taken separately with
``.lower(...).compile()``. Memory: ``xla_temp_bytes`` is XLA's scratch for
the step program per device (exact per row); ``peak_bytes`` is the runtime
peak, ``device_peak_bytes_in_use`` on GPU or the process's peak RSS on CPU
(``process_peak_rss``): both are peaks over the life of a process, so run
rows with ``isolate=True`` (one process each) to attribute them.
"""

import functools
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn import baseline
from metalearn import precision
from metalearn import schedules
from metalearn import sharding
from metalearn import step as step_lib
from metalearn.api import compiled_temp_bytes
from metalearn.baseline import Problem
from metalearn.core import fixed_inner_lrs
from metalearn.data import episodes
from metalearn.models import conv4
from metalearn.models import resolve_conv_impl
from metalearn.types import Array, Task

ALGORITHMS = ("maml", "fomaml", "mamlpp", "mamlpp_first_order")
INNER_LR = 0.1
OUTER_LR = 1e-3
MSL_EPOCHS = 10
STEPS_PER_EPOCH = 500


class Workload(NamedTuple):
  """What is computed: algorithm, task shape and model size."""
  algorithm: str = "maml"
  meta_batch_size: int = 4
  n_way: int = 5
  k_shot: int = 1
  n_query: int = 15
  inner_steps: int = 1
  filters: int = 64
  num_blocks: int = 4
  image_size: int = 28


class Mode(NamedTuple):
  """How it is computed; built from a spec string by :func:`parse_mode`."""
  spec: str = "plain"
  unroll: bool = False
  remat: bool = False
  bf16: bool = False
  shard: bool = False
  map: bool = False
  every_query: bool = False
  conv: str = "auto"
  steps_per_call: int = 1

  @property
  def plain(self) -> bool:
    return self.spec == "plain"


class Timing(NamedTuple):
  """Meta-steps run before timing, timed chunks, meta-steps per chunk."""
  warmup: int = 2
  chunks: int = 5
  steps_per_chunk: int = 4


class Row(NamedTuple):
  """One measured (workload, mode); ``error`` is set when it failed."""
  algorithm: str
  mode: str
  meta_batch_size: int
  n_way: int
  k_shot: int
  n_query: int
  inner_steps: int
  filters: int
  num_blocks: int = 4
  devices: int = 1
  conv_impl: str = ""
  tasks_per_s: Optional[float] = None
  step_s_median: Optional[float] = None
  step_s_p25: Optional[float] = None
  step_s_p75: Optional[float] = None
  step_s_min: Optional[float] = None
  step_s_max: Optional[float] = None
  compile_s: Optional[float] = None
  xla_temp_bytes: Optional[int] = None
  peak_bytes: Optional[int] = None
  peak_source: Optional[str] = None
  final_loss: Optional[float] = None
  speedup: Optional[float] = None
  chunks: int = 0
  steps_per_chunk: int = 0
  platform: str = ""
  device_kind: str = ""
  jax_version: str = jax.__version__
  error: Optional[str] = None


def parse_mode(spec: str) -> Mode:
  """``plain`` or ``tuned`` plus knobs, e.g. ``tuned+remat+spc4``.

  Knobs: ``unroll`` (unroll the inner ``lax.scan``), ``remat``
  (``jax.checkpoint`` per inner step), ``bf16`` (bfloat16 compute), ``shard``
  (split tasks over all devices), ``map`` (``lax.map`` over tasks instead of
  ``vmap``), ``mm`` / ``xla`` (shifted-matmul / XLA convolutions instead of
  the model's ``auto`` choice), ``everyq`` (MAML/FOMAML run the query set
  after every inner step, weighted one-hot, as before the library skipped
  it: measures that lever), ``spcN`` (N meta-steps per call).
  """
  head, *knobs = spec.strip().split("+")
  if head == "plain" and not knobs:
    return Mode("plain", unroll=True, conv="xla")
  if head != "tuned":
    raise ValueError(f"mode {spec!r}: expected 'plain' or 'tuned[+knob...]' "
                     "with knobs unroll, remat, bf16, shard, map, mm, xla, "
                     "everyq, spcN.")
  mode = Mode(spec.strip())
  for knob in knobs:
    if knob in ("unroll", "remat", "bf16", "shard", "map"):
      mode = mode._replace(**{knob: True})
    elif knob == "everyq":
      mode = mode._replace(every_query=True)
    elif knob in ("mm", "xla"):
      mode = mode._replace(conv="matmul" if knob == "mm" else "xla")
    elif knob.startswith("spc") and knob[3:].isdigit() and int(knob[3:]) > 0:
      mode = mode._replace(steps_per_call=int(knob[3:]))
    else:
      raise ValueError(f"mode {spec!r}: unknown knob {knob!r}.")
  return mode


def grid(algorithms: Sequence[str], meta_batch_sizes: Sequence[int],
         n_ways: Sequence[int] = (5,), k_shots: Sequence[int] = (1,),
         n_queries: Sequence[int] = (15,), inner_steps: Sequence[int] = (1,),
         filters: int = 64, num_blocks: int = 4,
         image_size: int = 28) -> list[Workload]:
  """Every combination of the given values, as workloads."""
  for a in algorithms:
    if a not in ALGORITHMS:
      raise ValueError(f"algorithm {a!r} is not one of {ALGORITHMS}.")
  return [Workload(a, t, n, k, q, s, filters, num_blocks, image_size)
          for a, t, n, k, q, s in itertools.product(
              algorithms, meta_batch_sizes, n_ways, k_shots, n_queries,
              inner_steps)]


def synthetic_dataset(seed: int = 0, *, num_classes: int = 100,
                      samples_per_class: int = 20,
                      image_size: int = 28) -> Array:
  """Random binary uint8 images shaped like the Omniglot cache: [C, 20, H, W].

  Drawn with NumPy and copied to the device once, like the real cache; tasks
  are then sampled from it on the device.
  """
  shape = (num_classes, samples_per_class, image_size, image_size)
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(0, 2, shape, dtype=np.uint8))


def synthetic_task_fn(n_way: int, k_shot: int, n_query: int,
                      meta_batch_size: int) -> Callable[[Array, Array], Task]:
  """``task_fn(key, data) -> Task`` batch via the library's on-device sampler
  (:func:`metalearn.data.episodes.sample_tasks`): inputs [T, N*K, H, W, 1]."""
  return functools.partial(episodes.sample_tasks, n_way=n_way, k_shot=k_shot,
                           n_query=n_query, batch_size=meta_batch_size)


def make_problem(w: Workload, seed: int = 0,
                 conv_impl: str = "auto") -> Problem:
  """Builds the model, rates, weights and synthetic data of one workload.

  MAML/FOMAML get no step weights (the last step's query loss alone); MAML++
  gets the multi-step loss weights of its first epoch.
  """
  if w.algorithm not in ALGORITHMS:
    raise ValueError(f"algorithm {w.algorithm!r} is not one of {ALGORITHMS}.")
  mamlpp = w.algorithm.startswith("mamlpp")
  first_order = w.algorithm in ("fomaml", "mamlpp_first_order")
  n = w.inner_steps
  model = conv4(w.n_way, input_shape=(w.image_size, w.image_size, 1),
                filters=w.filters, num_blocks=w.num_blocks,
                per_step_bn=n if mamlpp else 0, conv_impl=conv_impl)
  # Under jit: one compile instead of one per eager op.
  params = jax.jit(model.init)(jax.random.key(seed))
  inner_lrs = jax.jit(lambda p: fixed_inner_lrs(p, INNER_LR, n))(params)
  weights_fn = None
  if mamlpp:
    weights_fn = lambda s: schedules.msl_weights(  # noqa: E731
        n, s / STEPS_PER_EPOCH, MSL_EPOCHS)
  return Problem(
      model.apply, params, inner_lrs, weights_fn,
      synthetic_task_fn(w.n_way, w.k_shot, w.n_query, w.meta_batch_size),
      synthetic_dataset(seed, image_size=w.image_size), first_order,
      learn_inner_lrs=mamlpp, step_aware=model.step_aware)


def _peak_memory(devices: Sequence[jax.Device]) -> tuple[int, str]:
  """Largest device peak where the backend reports one, else peak RSS."""
  peaks = []
  for d in devices:
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if not stats or "peak_bytes_in_use" not in stats:
      break
    peaks.append(int(stats["peak_bytes_in_use"]))
  else:
    return max(peaks), "device_peak_bytes_in_use"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss * (1 if sys.platform == "darwin" else 1024), "process_peak_rss"


def _build(w: Workload, mode: Mode, problem: Problem, key: Array):
  """Compiles one implementation.

  Returns:
    ``(state, run, compile_s, xla_temp_bytes, devices)`` where
    ``run(state) -> (state, loss)`` does ``mode.steps_per_call`` meta-steps.
  """
  p = problem
  optimizer = optax.adam(OUTER_LR)
  state = jax.jit(functools.partial(
      step_lib.init_meta_state, optimizer=optimizer,
      learn_inner_lrs=p.learn_inner_lrs))(p.params, p.inner_lrs)
  if mode.plain:
    sample, step = baseline.make_plain_step(p, optimizer, w.inner_steps)
    start = time.perf_counter()
    sample_c = sample.lower(key, state.step, p.data).compile()
    tasks = jax.eval_shape(sample, key, state.step, p.data)
    step_c = step.lower(state, tasks).compile()
    compile_s = time.perf_counter() - start

    def run(state):
      return step_c(state, sample_c(key, state.step, p.data))

    return (state, run, compile_s, compiled_temp_bytes(step_c),
            jax.devices()[:1])

  devices = jax.devices() if mode.shard else jax.devices()[:1]
  mesh = sharding.make_mesh(devices)
  sharding.check_divisible(w.meta_batch_size, mesh)
  extra = {"batching": "map"} if mode.map else {}
  weights_fn = p.weights_fn
  if mode.every_query and weights_fn is None:
    weights_fn = lambda s: schedules.last_step_weights(w.inner_steps)  # noqa
  step = step_lib.make_meta_step(
      precision.compute_in(p.apply_fn, "bfloat16" if mode.bf16 else "float32"),
      optimizer,
      p.task_fn, weights_fn, first_order=p.first_order,
      learn_inner_lrs=p.learn_inner_lrs, step_aware=p.step_aware,
      remat=mode.remat, unroll=True if mode.unroll else 1,
      steps_per_call=mode.steps_per_call,
      task_sharding=sharding.task_sharding(mesh), donate=True, **extra)
  state = sharding.replicate(state, mesh)
  data = sharding.replicate(p.data, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  compile_s = time.perf_counter() - start

  def run(state):
    state, out = compiled(state, data, key)
    return state, out.loss

  return state, run, compile_s, compiled_temp_bytes(compiled), devices


def measure(w: Workload, mode: Mode, timing: Timing = Timing(), *,
            seed: int = 0) -> Row:
  """Compiles, warms up and times one workload in one mode.

  Args:
    w: the workload.
    mode: from :func:`parse_mode`.
    timing: warm-up meta-steps, timed chunks and meta-steps per chunk (rounded
      up to a multiple of ``mode.steps_per_call``).
    seed: seeds the parameters, the data and the task keys.

  Returns:
    A :class:`Row` (``speedup`` unset; :func:`run_grid` fills it in).
  """
  key = jax.random.key(seed)
  state, run, compile_s, temp, devices = _build(
      w, mode, make_problem(w, seed, mode.conv), key)
  spc = mode.steps_per_call
  calls = max(1, -(-timing.steps_per_chunk // spc))
  for _ in range(max(1, -(-timing.warmup // spc))):
    state, loss = run(state)
  jax.block_until_ready((state, loss))
  times = []
  for _ in range(timing.chunks):
    start = time.perf_counter()
    for _ in range(calls):
      state, loss = run(state)
    jax.block_until_ready((state, loss))
    times.append((time.perf_counter() - start) / (calls * spc))
  peak, source = _peak_memory(devices)
  p0, p25, p50, p75, p100 = (float(v) for v in np.percentile(
      times, [0, 25, 50, 75, 100]))
  return _blank_row(w, mode)._replace(
      devices=len(devices), tasks_per_s=w.meta_batch_size / p50,
      step_s_median=p50, step_s_p25=p25, step_s_p75=p75, step_s_min=p0,
      step_s_max=p100, compile_s=compile_s, xla_temp_bytes=temp,
      peak_bytes=peak, peak_source=source,
      final_loss=float(np.ravel(jax.device_get(loss))[-1]),
      chunks=timing.chunks, steps_per_chunk=calls * spc)


def _blank_row(w: Workload, mode: Mode) -> Row:
  dev = jax.devices()[0]
  return Row(w.algorithm, mode.spec, w.meta_batch_size, w.n_way, w.k_shot,
             w.n_query, w.inner_steps, w.filters, w.num_blocks,
             conv_impl=resolve_conv_impl(mode.conv), platform=dev.platform,
             device_kind=dev.device_kind)


def _measure_safe(w: Workload, mode: Mode, timing: Timing,
                  seed: int) -> Row:
  try:
    return measure(w, mode, timing, seed=seed)
  except Exception as e:  # pylint: disable=broad-except
    return _blank_row(w, mode)._replace(
        error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")


def _measure_isolated(w: Workload, mode: Mode, timing: Timing,
                      seed: int) -> Row:
  """Runs :func:`measure` in a fresh Python process (own memory peak)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.environ.get("PYTHONPATH")
  env = {**os.environ,
         "PYTHONPATH": root + (os.pathsep + path if path else "")}
  request = json.dumps({"workload": w._asdict(), "mode": mode.spec,
                        "timing": timing._asdict(), "seed": seed})
  proc = subprocess.run(
      [sys.executable, "-c", "from metalearn import benchmark as b; "
       "b.worker_main()"], input=request, capture_output=True, text=True,
      env=env, check=False)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode == 0 and lines:
    return Row(**json.loads(lines[-1]))
  tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
  return _blank_row(w, mode)._replace(
      error=f"worker exited with {proc.returncode}: {tail}")


def worker_main() -> None:
  """Entry point of an isolated worker: JSON request on stdin, row out."""
  req = json.loads(sys.stdin.read())
  row = _measure_safe(Workload(**req["workload"]), parse_mode(req["mode"]),
                      Timing(**req["timing"]), req["seed"])
  print(json.dumps(row._asdict()), flush=True)


def with_speedups(rows: Sequence[Row]) -> list[Row]:
  """Sets ``speedup`` = tasks/s over the ``plain`` row of the same workload."""
  def workload(r):
    return (r.algorithm, r.meta_batch_size, r.n_way, r.k_shot, r.n_query,
            r.inner_steps, r.filters, r.num_blocks)
  base = {workload(r): r.tasks_per_s for r in rows
          if r.mode == "plain" and r.tasks_per_s}
  return [r._replace(speedup=r.tasks_per_s / base[workload(r)])
          if r.tasks_per_s and workload(r) in base else r for r in rows]


def run_grid(workloads: Sequence[Workload], modes: Sequence[Mode],
             timing: Timing = Timing(), *, isolate: bool = False,
             seed: int = 0,
             log: Optional[Callable[[str], None]] = None) -> list[Row]:
  """Measures every workload in every mode; returns rows with speedups.

  Args:
    workloads: from :func:`grid`.
    modes: from :func:`parse_mode`; put ``plain`` first to get speedups.
    timing: see :class:`Timing`.
    isolate: one fresh process per row, so ``peak_bytes`` belongs to that row
      alone (and a crash or out-of-memory becomes an ``error`` row).
    seed: as in :func:`measure`.
    log: called with a one-line summary after each row.
  """
  fn = _measure_isolated if isolate else _measure_safe
  rows = []
  for w in workloads:
    for mode in modes:
      row = fn(w, mode, timing, seed)
      rows.append(row)
      if log:
        log(f"{row.algorithm} T={row.meta_batch_size} {row.mode}: "
            + (row.error or f"{row.tasks_per_s:.1f} tasks/s, compile "
               f"{row.compile_s:.1f}s"))
  return with_speedups(rows)


def _mib(n: Optional[int]) -> str:
  return "" if n is None else f"{n / 2**20:.1f}"


def markdown_table(rows: Sequence[Row]) -> str:
  """The rows as a markdown table, with the platform and memory sources."""
  head = ("| algorithm | mode | tasks | N-K-Q | inner steps | model | conv | "
          "devices | tasks/s | s/meta-step median [p25, p75] | speedup vs "
          "plain | compile s | XLA temp MiB | peak MiB |")
  lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
  for r in rows:
    shape = f"{r.n_way}-{r.k_shot}-{r.n_query}"
    model = f"conv{r.num_blocks}-{r.filters}"
    lead = (f"| {r.algorithm} | {r.mode} | {r.meta_batch_size} | {shape} | "
            f"{r.inner_steps} | {model} | {r.conv_impl} | {r.devices} | ")
    if r.error:
      lines.append(lead + f"error: {r.error} |" + " |" * 6)
      continue
    speedup = "" if r.speedup is None else f"{r.speedup:.2f}x"
    lines.append(
        lead + f"{r.tasks_per_s:.1f} | {r.step_s_median:.4f} "
        f"[{r.step_s_p25:.4f}, {r.step_s_p75:.4f}] | {speedup} | "
        f"{r.compile_s:.1f} | {_mib(r.xla_temp_bytes)} | "
        f"{_mib(r.peak_bytes)} |")
  kinds = sorted({f"{r.platform} ({r.device_kind})" for r in rows
                  if r.platform})
  sources = sorted({r.peak_source for r in rows if r.peak_source})
  notes = (f"\nDevice: {', '.join(kinds)}; jax {jax.__version__}. Peak memory: "
           f"{', '.join(sources) or 'n/a'}. Timed chunks per row: "
           f"{max((r.chunks for r in rows), default=0)}.\n")
  return "\n".join(lines) + "\n" + notes


def read_results(path: str) -> list[Row]:
  """Rows from a ``results.jsonl`` file."""
  with open(path) as f:
    return [Row(**json.loads(line)) for line in f if line.strip()]


def write_results(rows: Sequence[Row], output_dir: str, *,
                  append: bool = False) -> str:
  """Writes ``results.jsonl`` (one row per line) and ``results.md``.

  Args:
    rows: the measured rows.
    output_dir: created if missing.
    append: add to an existing ``results.jsonl``; the table then covers every
      row in the file.

  Returns:
    The markdown table.
  """
  os.makedirs(output_dir, exist_ok=True)
  jsonl = os.path.join(output_dir, "results.jsonl")
  with open(jsonl, "a" if append else "w") as f:
    for r in rows:
      f.write(json.dumps(r._asdict()) + "\n")
  table = markdown_table(read_results(jsonl))
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write(table)
  return table
