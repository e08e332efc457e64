"""Compiles, warms up and times one (workload, mode).

Rows are timed after warm-up over several chunks, each ended by
``jax.block_until_ready``; compile time is taken separately with
``.lower(...).compile()``. Memory comes from :mod:`metalearn.profiling`:
XLA's scratch bytes of the step program and the runtime peak (a peak over
the life of the process, so ``isolate=True`` gives each row a process).
:func:`metalearn.benchmark.grid.run_grid` runs a grid of them.
"""

import functools
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np
import optax

from metalearn.benchmark import plain
from metalearn import compilation_cache
from metalearn import precision
from metalearn import profiling
from metalearn import schedules
from metalearn import sharding
from metalearn import step as step_lib
from metalearn import task_copies
from metalearn.benchmark.plain import Problem
from metalearn.benchmark.results import Row
from metalearn.benchmark.workloads import Mode
from metalearn.benchmark.workloads import OUTER_LR
from metalearn.benchmark.workloads import Workload
from metalearn.benchmark.workloads import make_problem
from metalearn.benchmark.workloads import parse_mode
from metalearn.models import resolve_conv_impl
from metalearn.types import Array


class Timing(NamedTuple):
  """Meta-steps run before timing, timed chunks, meta-steps per chunk."""
  warmup: int = 2
  chunks: int = 5
  steps_per_chunk: int = 4


class Built(NamedTuple):
  """One compiled implementation, ready to time.

  Attributes:
    state: the initial ``MetaState`` (placed on ``devices``).
    run: ``run(state) -> (state, loss)``: ``steps_per_call`` meta-steps.
    compile_s: seconds spent compiling.
    xla_temp_bytes: XLA's scratch bytes of the step program per device.
    devices: the devices the step runs on.
  """
  state: Any
  run: Callable[[Any], tuple[Any, Array]]
  compile_s: float
  xla_temp_bytes: Optional[int]
  devices: Sequence[jax.Device]


def _build_plain(w: Workload, p: Problem, state, key: Array,
                 optimizer: optax.GradientTransformation) -> Built:
  """The plain step: sampling and the meta-step as two compiled programs."""
  sample, step = plain.make_plain_step(p, optimizer, w.inner_steps)
  start = time.perf_counter()
  sample_c = sample.lower(key, state.step, p.data).compile()
  tasks = jax.eval_shape(sample, key, state.step, p.data)
  step_c = step.lower(state, tasks).compile()
  compile_s = time.perf_counter() - start

  def run(state):
    return step_c(state, sample_c(key, state.step, p.data))

  return Built(state, run, compile_s, profiling.compiled_temp_bytes(step_c),
               jax.devices()[:1])


def _build_tuned(w: Workload, mode: Mode, p: Problem, state, key: Array,
                 optimizer: optax.GradientTransformation) -> Built:
  """The library's meta-step with the knobs of ``mode``."""
  devices = jax.devices() if mode.shard else jax.devices()[:1]
  mesh = sharding.make_mesh(devices)
  sharding.check_divisible(w.meta_batch_size, mesh)
  extra = {"batching": "map"} if mode.map else {}
  weights_fn = p.weights_fn
  if mode.every_query and weights_fn is None:
    weights_fn = lambda s: schedules.last_step_weights(w.inner_steps)  # noqa
  dtype = "bfloat16" if mode.bf16 else "float32"
  body_head = None
  if p.body_head is not None and not mode.body_loop:
    body_head = p.body_head._replace(
        body=precision.compute_in(p.body_head.body, dtype))
  step = step_lib.make_meta_step(
      precision.compute_in(p.apply_fn, dtype),
      optimizer, p.task_fn, weights_fn, first_order=p.first_order,
      body_head=body_head,
      learn_inner_lrs=p.learn_inner_lrs, step_aware=p.step_aware,
      remat=mode.remat, unroll=True if mode.unroll else 1,
      steps_per_call=mode.steps_per_call,
      task_sharding=sharding.task_sharding(mesh), donate=True,
      tile_params=task_copies.resolve(mode.tile, resolve_conv_impl(mode.conv)),
      **extra)
  state = sharding.replicate(state, mesh)
  data = sharding.replicate(p.data, mesh)
  start = time.perf_counter()
  options = {**(compilation_cache.FAST_CPU_COMPILE if mode.fast_compile
                else compilation_cache.OLD_CPU_FUSION if mode.old_fusion
                else {}),
             **(compilation_cache.FAST_COMPILE_PRESET
                if mode.fast_compile_preset else {}),
             **(compilation_cache.YNN_ELEMENTWISE
                if mode.ynn_elementwise else {}),
             **(compilation_cache.LLVM_LEVEL_1 if mode.llvm_level_1 else {})
             } or None
  compiled = step.lower(state, data, key).compile(options)
  compile_s = time.perf_counter() - start

  def run(state):
    state, out = compiled(state, data, key)
    return state, out.loss

  return Built(state, run, compile_s,
               profiling.compiled_temp_bytes(compiled), devices)


def build(w: Workload, mode: Mode, problem: Problem, key: Array) -> Built:
  """Compiles one implementation of ``problem`` (plain or tuned)."""
  optimizer = optax.adam(OUTER_LR)
  state = jax.jit(functools.partial(
      step_lib.init_meta_state, optimizer=optimizer,
      learn_inner_lrs=problem.learn_inner_lrs))(problem.params,
                                                problem.inner_lrs)
  if mode.plain:
    return _build_plain(w, problem, state, key, optimizer)
  return _build_tuned(w, mode, problem, state, key, optimizer)


def calls_per_chunk(timing: Timing, steps_per_call: int) -> int:
  """Calls of ``steps_per_call`` meta-steps that make one timed chunk."""
  return max(1, -(-timing.steps_per_chunk // steps_per_call))


def warm_up(built: Built, timing: Timing, steps_per_call: int):
  """Runs ``timing.warmup`` meta-steps (rounded up to whole calls); returns
  the state after them."""
  state = built.state
  for _ in range(max(1, -(-timing.warmup // steps_per_call))):
    state, loss = built.run(state)
  jax.block_until_ready((state, loss))
  return state


def time_chunk(built: Built, state, calls: int):
  """Times ``calls`` calls from ``state``: ``(state, loss, seconds)``."""
  start = time.perf_counter()
  for _ in range(calls):
    state, loss = built.run(state)
  jax.block_until_ready((state, loss))
  return state, loss, time.perf_counter() - start


def timed_row(w: Workload, mode: Mode, built: Built, times: Sequence[float],
              loss: Array, steps_per_chunk: int, peak: Optional[int],
              peak_source: Optional[str]) -> Row:
  """The row of ``(w, mode)`` from its seconds per meta-step of each chunk
  (``speedup`` unset)."""
  p0, p25, p50, p75, p100 = (float(v) for v in np.percentile(
      times, [0, 25, 50, 75, 100]))
  return blank_row(w, mode)._replace(
      devices=len(built.devices), tasks_per_s=w.meta_batch_size / p50,
      step_s_median=p50, step_s_p25=p25, step_s_p75=p75, step_s_min=p0,
      step_s_max=p100, compile_s=built.compile_s,
      xla_temp_bytes=built.xla_temp_bytes, peak_bytes=peak,
      peak_source=peak_source,
      final_loss=float(np.ravel(jax.device_get(loss))[-1]),
      chunks=len(times), steps_per_chunk=steps_per_chunk)


def measure(w: Workload, mode: Mode, timing: Timing = Timing(), *,
            seed: int = 0) -> Row:
  """Compiles, warms up and times one workload in one mode.

  Args:
    w: the workload.
    mode: from :func:`metalearn.benchmark.workloads.parse_mode`.
    timing: warm-up meta-steps, timed chunks and meta-steps per chunk (rounded
      up to a multiple of ``mode.steps_per_call``).
    seed: seeds the parameters, the data and the task keys.

  Returns:
    A :class:`Row` (``speedup`` unset; :func:`metalearn.benchmark.grid.run_grid` fills it
    in).
  """
  key = jax.random.key(seed)
  built = build(w, mode, make_problem(w, seed, mode.conv,
                                      block_remat=mode.block_remat), key)
  calls = calls_per_chunk(timing, mode.steps_per_call)
  state, times = warm_up(built, timing, mode.steps_per_call), []
  for _ in range(timing.chunks):
    state, loss, seconds = time_chunk(built, state, calls)
    times.append(seconds / (calls * mode.steps_per_call))
  peak, source = profiling.peak_memory(built.devices)
  return timed_row(w, mode, built, times, loss, calls * mode.steps_per_call,
                   peak, source)


def blank_row(w: Workload, mode: Mode, error: Optional[str] = None) -> Row:
  """The row of ``(w, mode)`` with no measurements (and ``error``, if any)."""
  dev = jax.devices()[0]
  return Row(w.algorithm, mode.spec, w.meta_batch_size, w.n_way, w.k_shot,
             w.n_query, w.inner_steps, w.filters, num_blocks=w.num_blocks,
             msl_epochs=w.msl_epochs, steps_per_epoch=w.steps_per_epoch,
             conv_impl=resolve_conv_impl(mode.conv), platform=dev.platform,
             device_kind=dev.device_kind, model=w.model,
             widths="-".join(str(c) for c in w.widths)
             if w.model == "resnet12" else "",
             image_size=w.image_size, channels=w.channels, error=error)


def error_text(e: Exception) -> str:
  return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def measure_safe(w: Workload, mode: Mode, timing: Timing,
                  seed: int) -> Row:
  """:func:`measure`, with a failure turned into an error row."""
  try:
    return measure(w, mode, timing, seed=seed)
  except Exception as e:  # pylint: disable=broad-except
    return blank_row(w, mode, error_text(e))


def measure_request(request: dict[str, Any]) -> dict[str, Any]:
  """:func:`measure` from and to JSON: what an isolated process runs.

  Args:
    request: ``{"workload": Workload fields, "mode": spec, "timing": Timing
      fields, "seed": int}``.

  Returns:
    The :class:`Row` as a dict (an error row when measuring failed).
  """
  row = measure_safe(Workload(**request["workload"]),
                      parse_mode(request["mode"]),
                      Timing(**request["timing"]), request["seed"])
  return row._asdict()


def measure_isolated(w: Workload, mode: Mode, timing: Timing,
                      seed: int) -> Row:
  """:func:`measure` in a fresh Python process (its own memory peak)."""
  request = {"workload": w._asdict(), "mode": mode.spec,
             "timing": timing._asdict(), "seed": seed}
  try:
    return Row(**profiling.run_isolated(
        "metalearn.benchmark.measure:measure_request", request))
  except RuntimeError as e:  # The process crashed, e.g. out of memory.
    return blank_row(w, mode, error_text(e))
