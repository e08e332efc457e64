"""Throughput curves: tasks/s, XLA memory and FLOP/s of the library step.

Two curves of :func:`metalearn.step.make_meta_step` on Omniglot-shaped
synthetic tasks (:func:`metalearn.benchmark.make_problem`):

* ``meta_batch``: one device, meta-batch 1, 2, 4, ... (how far batching
  tasks pays before the device is full);
* ``devices``: one fixed meta-batch split over 1, 2, 4, ... devices (strong
  scaling). On a CPU each count runs in its own process with that many
  simulated devices (``--xla_force_host_platform_device_count``): they share
  the same cores, so this measures the overhead of splitting, not a speed-up.
  On an accelerator the first N real devices are used, in this process.

Each point is compiled once (``.lower().compile()``): its XLA scratch bytes
come from the compiled program's memory analysis (per device) and its FLOPs
from XLA's cost analysis (per device, times the device count), then it is
warmed up and timed. Achieved FLOP/s are reported as a fraction of the
FLOP/s of a large ``jnp.dot`` timed on one device of the same machine in the
same run (:func:`matmul_flops_per_s`).
"""

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn import profiling
from metalearn import sharding
from metalearn import step as step_lib
from metalearn.benchmark.workloads import OUTER_LR
from metalearn.benchmark.workloads import Workload
from metalearn.benchmark.workloads import make_problem
from metalearn.models import native_conv

_ROOT = Path(__file__).resolve().parents[2]


class Point(NamedTuple):
  """One measured (devices, meta-batch); ``error`` is set when it failed.

  Attributes:
    curve: ``meta_batch`` or ``devices``.
    devices: devices the meta-batch is split over.
    meta_batch_size: tasks per meta-step (all devices together).
    tasks_per_s: ``meta_batch_size`` / median seconds per meta-step.
    step_s: median seconds per meta-step.
    compile_s: seconds to compile the step.
    xla_temp_bytes: XLA scratch bytes of the step, per device.
    flops_per_step: XLA's cost-analysis FLOPs of one meta-step, all devices.
    flops_per_s: ``flops_per_step / step_s``.
    matmul_fraction: ``flops_per_s`` over the run's matmul FLOP/s.
    error: why the point has no measurement (e.g. skipped for memory).
  """
  curve: str
  devices: int
  meta_batch_size: int
  tasks_per_s: Optional[float] = None
  step_s: Optional[float] = None
  compile_s: Optional[float] = None
  xla_temp_bytes: Optional[int] = None
  flops_per_step: Optional[float] = None
  flops_per_s: Optional[float] = None
  matmul_fraction: Optional[float] = None
  error: Optional[str] = None


def matmul_flops_per_s(size: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a float32 ``[size, size] @ [size, size]`` on one device.

  The best of ``repeats`` timed calls, each ``2 * size**3`` FLOPs.
  """
  x = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  dot = jax.jit(jnp.dot).lower(x, x).compile()
  jax.block_until_ready(dot(x, x))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(dot(x, x))
    best = min(best, time.perf_counter() - start)
  return 2.0 * size**3 / best


def compiled_flops(compiled) -> Optional[float]:
  """FLOPs of a compiled (or lowered) program, per device: XLA's cost
  analysis, plus the C++ convolutions' custom calls, which it cannot see
  (:func:`metalearn.models.native_conv.flops_in_text`)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  text = compiled.as_text()
  # XLA counts each custom call as -1 FLOPs ("unknown"): taken back out.
  calls = text.count(" custom-call(") + text.count("stablehlo.custom_call @")
  return (float(analysis["flops"]) + calls
          + native_conv.flops_in_text(text))


def _compile(w: Workload, devices: int, seed: int):
  """(compiled step, state, data, key) of ``w`` over the first devices."""
  problem = make_problem(w, seed)
  mesh = sharding.make_mesh(jax.devices()[:devices])
  sharding.check_divisible(w.meta_batch_size, mesh)
  optimizer = optax.adam(OUTER_LR)
  state = jax.jit(functools.partial(
      step_lib.init_meta_state, optimizer=optimizer,
      learn_inner_lrs=problem.learn_inner_lrs))(problem.params,
                                                problem.inner_lrs)
  state = sharding.replicate(state, mesh)
  data = sharding.replicate(problem.data, mesh)
  step = step_lib.make_meta_step(
      problem.apply_fn, optimizer, problem.task_fn, problem.weights_fn,
      first_order=problem.first_order,
      learn_inner_lrs=problem.learn_inner_lrs, step_aware=problem.step_aware,
      task_sharding=sharding.task_sharding(mesh))
  key = jax.random.key(seed)
  return step.lower(state, data, key).compile(), state, data, key


def measure_point(w: Workload, devices: int, *, curve: str, steps: int = 3,
                  warmup: int = 1, max_temp_bytes: int = 0,
                  seed: int = 0) -> Point:
  """Compiles, warms up and times ``w`` split over ``devices`` devices.

  Args:
    w: the workload (its ``meta_batch_size`` is the global meta-batch).
    devices: the first this many devices of ``jax.devices()``.
    curve: the curve the point belongs to (a label).
    steps: timed meta-steps (the median is reported), >= 1.
    warmup: meta-steps run before timing.
    max_temp_bytes: > 0: skip timing (an error point) when the compiled
      step needs more XLA scratch than this per device.
    seed: parameters, data and task keys.

  Returns:
    A :class:`Point` (``matmul_fraction`` unset).
  """
  point = Point(curve, devices, w.meta_batch_size)
  start = time.perf_counter()
  compiled, state, data, key = _compile(w, devices, seed)
  temp = profiling.compiled_temp_bytes(compiled)
  flops = compiled_flops(compiled)
  point = point._replace(
      compile_s=time.perf_counter() - start, xla_temp_bytes=temp,
      flops_per_step=None if flops is None else flops * devices)
  if max_temp_bytes and temp and temp > max_temp_bytes:
    return point._replace(error=f"skipped: XLA scratch {temp / 2**30:.2f} "
                          f"GiB > {max_temp_bytes / 2**30:.2f} GiB")
  for _ in range(warmup):
    state, out = compiled(state, data, key)
  jax.block_until_ready(state)
  times = []
  for _ in range(max(1, steps)):
    t0 = time.perf_counter()
    state, out = compiled(state, data, key)
    jax.block_until_ready((state, out))
    times.append(time.perf_counter() - t0)
  step_s = float(np.median(times))
  return point._replace(
      step_s=step_s, tasks_per_s=w.meta_batch_size / step_s,
      flops_per_s=(None if point.flops_per_step is None
                   else point.flops_per_step / step_s))


def point_request(request: dict) -> dict:
  """:func:`measure_point` from and to JSON (what a child process runs)."""
  try:
    point = measure_point(Workload(**request["workload"]),
                          request["devices"], **request["options"])
  except Exception as e:  # pylint: disable=broad-except
    point = Point(request["options"]["curve"], request["devices"],
                  request["workload"]["meta_batch_size"],
                  error=f"{type(e).__name__}: {str(e)[:300]}")
  return point._asdict()


def _in_child(request: dict, devices: int, timeout_s: float) -> Point:
  """:func:`point_request` in a fresh process with ``devices`` CPU devices."""
  flags = os.environ.get("XLA_FLAGS", "")
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join(
             p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p),
         "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count="
                      f"{devices}".strip()}
  code = ("import json, sys; from metalearn.benchmark import throughput as t;"
          " print('\\n' + json.dumps(t.point_request(json.loads("
          "sys.stdin.read()))))")
  try:
    proc = subprocess.run([sys.executable, "-c", code],
                          input=json.dumps(request), capture_output=True,
                          text=True, env=env, timeout=timeout_s, check=False)
  except subprocess.TimeoutExpired:
    return Point("devices", devices, request["workload"]["meta_batch_size"],
                 error=f"timed out after {timeout_s:.0f} s")
  lines = proc.stdout.strip().splitlines()
  if proc.returncode or not lines:
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return Point("devices", devices, request["workload"]["meta_batch_size"],
                 error=f"child exited with {proc.returncode}: {tail}")
  return Point(**json.loads(lines[-1]))


def meta_batch_curve(w: Workload, sizes: Sequence[int], *,
                     log: Callable[[str], None] = print,
                     **options) -> list[Point]:
  """``w`` on one device at every meta-batch size of ``sizes``.

  ``options`` are :func:`measure_point`'s (``steps``, ``warmup``,
  ``max_temp_bytes``, ``seed``).
  """
  points = []
  for size in sizes:
    try:
      point = measure_point(w._replace(meta_batch_size=size), 1,
                            curve="meta_batch", **options)
    except Exception as e:  # pylint: disable=broad-except
      point = Point("meta_batch", 1, size,
                    error=f"{type(e).__name__}: {str(e)[:300]}")
    points.append(point)
    log(describe(point))
  return points


def device_curve(w: Workload, counts: Sequence[int], *,
                 timeout_s: float = 600.0,
                 log: Callable[[str], None] = print,
                 **options) -> list[Point]:
  """``w`` (its meta-batch fixed) split over each device count of ``counts``.

  On a CPU each count runs in its own process with that many simulated
  devices; elsewhere in this process on the first ``count`` devices.
  """
  points = []
  for count in counts:
    options = {**options, "curve": "devices"}
    request = {"workload": w._asdict(), "devices": count, "options": options}
    if jax.default_backend() == "cpu":
      point = _in_child(request, count, timeout_s)
    elif count > jax.device_count():
      point = Point("devices", count, w.meta_batch_size,
                    error=f"only {jax.device_count()} devices")
    else:
      point = Point(**point_request(request))
    points.append(point)
    log(describe(point))
  return points


def with_fraction(points: Sequence[Point], matmul: float) -> list[Point]:
  """Fills ``matmul_fraction`` = achieved FLOP/s over ``matmul`` FLOP/s."""
  return [p._replace(matmul_fraction=None if p.flops_per_s is None
                     else p.flops_per_s / matmul) for p in points]


def describe(p: Point) -> str:
  """One line per point, for the log."""
  head = f"{p.curve}: {p.devices} device(s), meta-batch {p.meta_batch_size}"
  if p.error:
    return f"{head}: {p.error}"
  return (f"{head}: {p.tasks_per_s:.1f} tasks/s, {p.step_s * 1e3:.0f} ms/"
          f"step, XLA scratch {(p.xla_temp_bytes or 0) / 2**20:.1f} MiB")


def _cell(value, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
  return "-" if value is None else fmt.format(value * scale)


def markdown_table(points: Sequence[Point]) -> str:
  """The points as a markdown table (MiB, GFLOP, % of matmul FLOP/s)."""
  lines = ["| devices | meta-batch | tasks/s | ms/step | XLA scratch MiB "
           "(per device) | GFLOP/step | GFLOP/s | % of matmul | note |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for p in points:
    lines.append(
        f"| {p.devices} | {p.meta_batch_size} | {_cell(p.tasks_per_s)} | "
        f"{_cell(p.step_s, 1e3, '{:.0f}')} | "
        f"{_cell(p.xla_temp_bytes, 2**-20)} | "
        f"{_cell(p.flops_per_step, 1e-9, '{:.2f}')} | "
        f"{_cell(p.flops_per_s, 1e-9)} | "
        f"{_cell(p.matmul_fraction, 100.0)} | {p.error or ''} |")
  return "\n".join(lines)


def plot(points: Sequence[Point], x_field: str, path: str,
         title: str) -> str:
  """tasks/s (left axis) and XLA scratch MiB (right) against ``x_field``."""
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  done = [p for p in points if p.error is None]
  x = [getattr(p, x_field) for p in done]
  fig = Figure(figsize=(6, 4))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  ax.plot(x, [p.tasks_per_s for p in done], "o-", color="C0")
  if x_field == "devices" and done:
    ax.plot(x, [done[0].tasks_per_s * d / x[0] for d in x], ":", color="C0",
            label="linear scaling")
    ax.legend(loc="upper left")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("devices" if x_field == "devices" else "meta-batch size")
  ax.set_ylabel("tasks / s", color="C0")
  mem = ax.twinx()
  mem.plot(x, [(p.xla_temp_bytes or 0) / 2**20 for p in done], "s--",
           color="C1")
  mem.set_ylabel("XLA scratch MiB per device", color="C1")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  return path


def write(result: dict, output_dir: str | Path) -> list[str]:
  """Writes results.json, results.md and the two PNG plots; returns paths."""
  out = Path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  curves = {name: [Point(**p) for p in result[name]]
            for name in ("meta_batch", "devices")}
  paths = [str(out / "results.json"), str(out / "results.md")]
  (out / "results.json").write_text(json.dumps(result, indent=1))
  env = result["environment"]
  text = [f"# Throughput: {result['workload_text']}", "",
          f"Machine: {env['device']} x {env['device_count']}, {env['cpu']} "
          f"x {env['cpu_count']} cores, load average at start "
          f"{env['load_average_at_start']}; jax {env['jax']}; commit "
          f"{env['commit']}", f"Command: `{result['command']}`",
          f"Matmul FLOP/s (float32 {result['matmul_size']}^2 on one device):"
          f" {result['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s", ""]
  for name, title in (("meta_batch", "Meta-batch size, one device"),
                      ("devices", "Device count, fixed meta-batch")):
    if curves[name]:
      png = str(out / f"throughput_{name}.png")
      paths.append(plot(curves[name], "devices" if name == "devices"
                        else "meta_batch_size", png, title))
      text += [f"## {title}", "", markdown_table(curves[name]), "",
               f"![{title}]({Path(png).name})", ""]
  (out / "results.md").write_text("\n".join(text))
  return paths
