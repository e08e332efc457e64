"""Where a meta-step's time goes: its parts as separately compiled programs.

For a benchmark :class:`~metalearn.benchmark.workloads.Workload` in a
``tuned`` mode, :func:`programs` builds the parts of the library's
meta-step on the benchmark's synthetic data, each its own jitted program
made of the library's functions (:mod:`metalearn.core`,
:mod:`metalearn.rules`, :func:`metalearn.step.make_meta_step`).
:func:`measure` compiles and times each (warm-up calls, then the median of
timed calls, each to ``jax.block_until_ready``) and records XLA's
cost-analysis FLOPs, of the program with its inner loop unrolled where the
mode rolls it (cost analysis counts a loop's body once). Every time is per
meta-step: each program computes one meta-step's worth of its part.
:func:`profile_peer` gets the PyTorch peer's profile of the same workload
(``torch_peer.py --profile``); ``experiments/profile_step.py`` prints both.
"""

import json
import subprocess
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn import core
from metalearn import objectives
from metalearn import rules
from metalearn import step as step_lib
from metalearn.benchmark import peer
from metalearn.benchmark import throughput
from metalearn.benchmark.measure import Timing
from metalearn.benchmark.workloads import Mode
from metalearn.benchmark.workloads import OUTER_LR
from metalearn.benchmark.workloads import Workload
from metalearn.benchmark.workloads import make_problem
from metalearn.benchmark.workloads import parse_mode

# Mode knobs a breakdown honours; the others change what a part means.
KNOBS = ("unroll", "remat", "mm", "i2c", "i2cv", "xla")
# (derived part, minuend, subtrahends): the backward passes, and what the
# step spends beyond its sampling, meta-gradient and update.
DIFFERENCES = (("backward", "meta_grad", ("meta_loss",)),
               ("backward_first_order", "meta_grad_first_order",
                ("meta_loss",)),
               ("step_rest", "step", ("sample", "meta_grad", "outer_update")))


class Program(NamedTuple):
  """A part (``name``) as a jitted ``fn(*args)``; with ``carry``, ``fn``
  donates ``args[0]`` and returns its successor first (the step's state)."""
  name: str
  fn: Callable[..., Any]
  args: tuple
  carry: bool = False


class Part(NamedTuple):
  """A measured (or, ``derived``, differenced) part: median seconds per
  meta-step, XLA's FLOPs per meta-step, seconds to compile."""
  name: str
  seconds: Optional[float]
  flops: Optional[float]
  compile_s: Optional[float] = None
  derived: bool = False


class Breakdown(NamedTuple):
  """A workload's parts, with the same run's float32 matmul FLOP/s."""
  workload: Workload
  mode: str
  parts: tuple[Part, ...]
  matmul_flops_per_s: float


def check_mode(mode: str) -> Mode:
  """The parsed ``tuned`` mode, or ValueError for a knob not in KNOBS."""
  parsed = parse_mode(mode)
  if parsed.plain or any(k not in KNOBS for k in parsed.spec.split("+")[1:]):
    raise ValueError(f"mode {mode!r}: a breakdown times 'tuned' with the "
                     f"knobs {', '.join(KNOBS)} only.")
  return parsed


def programs(w: Workload, mode: str = "tuned", seed: int = 0
             ) -> list[Program]:
  """The parts of ``w``'s meta-step: ``sample`` (tasks), ``forward`` (the
  model on support and query sets), ``inner_grad`` (one support-loss
  gradient per task), ``inner_loop`` (adaptation), ``meta_loss``
  (adaptation + query loss), ``meta_grad`` (its value and gradient; also
  ``meta_grad_first_order``), ``outer_update`` (Adam) and ``step``.

  Every part gets the step's initial state and the task batch the step
  draws at step 0 (each field [meta_batch_size, ...]); ``forward`` and
  ``inner_grad`` use the shared initial weights, as an inner loop's first
  step does (differentiating every parameter, even where ANIL adapts the
  head alone). ``meta_grad_first_order`` is left out for a first-order
  ``w``; ``step`` is :func:`metalearn.step.make_meta_step`'s.

  Raises:
    ValueError: for an algorithm or mode the benchmark cannot time.
  """
  m = check_mode(mode)
  p = make_problem(w, seed, m.conv)
  optimizer = optax.adam(OUTER_LR)
  init = jax.jit(lambda params, lrs: step_lib.init_meta_state(
      params, lrs, optimizer, learn_inner_lrs=p.learn_inner_lrs))
  state = init(p.params, p.inner_lrs)
  key = jax.random.key(seed)
  options = dict(step_aware=p.step_aware, remat=m.remat,
                 unroll=True if m.unroll else 1, body_head=p.body_head)
  weights = None if p.weights_fn is None else p.weights_fn(state.step)
  train = step_lib.trainable(state.meta, p.learn_inner_lrs)
  zero = jnp.int32(0)

  def losses(task):
    return core.task_losses(p.apply_fn, task, step_aware=p.step_aware,
                            objective=objectives.CLASSIFICATION)

  def problem(meta, first_order):  # As make_meta_step builds it.
    def split(part):
      return ((part.params, part.inner_lrs) if p.learn_inner_lrs
              else (part, meta.inner_lrs))
    return rules.make_problem(p.apply_fn, split, inner=rules.sgd(),
                              first_order=first_order, **options)

  def sample(key, step, data):
    return p.task_fn(jax.random.fold_in(key, step), data)

  def forward(meta, tasks):
    return jax.vmap(lambda t: (losses(t).support_loss(meta.params, zero),
                               losses(t).query_metrics(meta.params, zero))
                    )(tasks)

  def inner_grad(meta, tasks):
    return jax.vmap(lambda t: jax.grad(losses(t).support_loss)(
        meta.params, zero))(tasks)

  def inner_loop(meta, tasks):
    run = rules.sgd().make(p.apply_fn, meta.params, meta.inner_lrs,
                           first_order=p.first_order, query_every_step=False,
                           **options)
    return jax.vmap(lambda t: run(t)[0])(tasks)  # Query set: dead code.

  def meta_loss(train, meta, tasks, weights):
    return problem(meta, p.first_order).meta_loss(train, tasks, weights)

  def meta_grad(first_order):
    return lambda train, meta, tasks, weights: rules.META_GRADIENT.direction(
        problem(meta, first_order), train, tasks, weights)

  def outer_update(train, opt_state, grads):
    updates, opt_state = optimizer.update(grads, opt_state, train)
    return optax.apply_updates(train, updates), opt_state

  step = step_lib.make_meta_step(
      p.apply_fn, optimizer, p.task_fn, p.weights_fn,
      first_order=p.first_order, learn_inner_lrs=p.learn_inner_lrs,
      donate=True, **options)
  tasks = jax.jit(sample)(key, state.step, p.data)
  meta_args = (train, state.meta, tasks, weights)
  progs = [
      Program("sample", jax.jit(sample), (key, state.step, p.data)),
      Program("forward", jax.jit(forward), (state.meta, tasks)),
      Program("inner_grad", jax.jit(inner_grad), (state.meta, tasks)),
      Program("inner_loop", jax.jit(inner_loop), (state.meta, tasks)),
      Program("meta_loss", jax.jit(meta_loss), meta_args),
      Program("meta_grad", jax.jit(meta_grad(p.first_order)), meta_args)]
  if not p.first_order:
    progs.append(Program("meta_grad_first_order", jax.jit(meta_grad(True)),
                         meta_args))
  zeros = jax.tree.map(jnp.zeros_like, train)
  return progs + [
      Program("outer_update", jax.jit(outer_update),
              (train, state.opt_state, zeros)),
      # A state of its own: the step donates it.
      Program("step", step, (init(p.params, p.inner_lrs), p.data, key),
              carry=True)]


def time_program(prog: Program, *, warmup: int = 1, repeats: int = 5
                 ) -> Part:
  """Compiles ``prog``, calls it ``warmup`` times, then times ``repeats``
  calls; the part's seconds are their median."""
  start = time.perf_counter()
  compiled = prog.fn.lower(*prog.args).compile()
  compile_s = time.perf_counter() - start
  args, times = prog.args, []
  for i in range(warmup + max(1, repeats)):
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    if i >= warmup:
      times.append(time.perf_counter() - start)
    if prog.carry:
      args = (out[0], *args[1:])
  return Part(prog.name, float(np.median(times)),
              throughput.compiled_flops(compiled), compile_s)


def unrolled_flops(prog: Program, twin: Program) -> Optional[float]:
  """XLA's FLOPs of ``twin`` (``prog`` with its inner loop unrolled),
  compiled, if its lowering counts more FLOPs than ``prog``'s; else None."""
  lowered = twin.fn.lower(*twin.args)
  if throughput.compiled_flops(lowered) == throughput.compiled_flops(
      prog.fn.lower(*prog.args)):
    return None
  return throughput.compiled_flops(lowered.compile())


def with_differences(parts: tuple[Part, ...]) -> tuple[Part, ...]:
  """``parts`` plus each difference of :data:`DIFFERENCES` whose parts
  were all measured (FLOPs differenced too where all are known)."""
  by_name = {p.name: p for p in parts}
  derived = []
  for name, plus, minus in DIFFERENCES:
    used = [by_name.get(n) for n in (plus, *minus)]
    if any(u is None or u.seconds is None for u in used):
      continue
    flops = (None if any(u.flops is None for u in used)
             else used[0].flops - sum(u.flops for u in used[1:]))
    derived.append(Part(name, used[0].seconds - sum(
        u.seconds for u in used[1:]), flops, derived=True))
  return tuple(parts) + tuple(derived)


def measure(w: Workload, mode: str = "tuned", *, warmup: int = 1,
            repeats: int = 5, seed: int = 0,
            matmul_flops_per_s: Optional[float] = None,
            log: Optional[Callable[[str], None]] = None) -> Breakdown:
  """Times every part of ``w``'s meta-step (:func:`programs`).

  Args:
    w, mode, seed: as in :func:`programs`.
    warmup, repeats: calls before timing, and timed calls per part.
    matmul_flops_per_s: the run's float32 matmul rate; measured here
      (:func:`metalearn.benchmark.throughput.matmul_flops_per_s`) if None.
    log: called with a line per part.
  """
  twins = {}
  if w.inner_steps > 1 and not check_mode(mode).unroll:
    twins = {t.name: t for t in programs(w, mode + "+unroll", seed)}
  parts = []
  for prog in programs(w, mode, seed):
    part = time_program(prog, warmup=warmup, repeats=repeats)
    if prog.name in twins:
      part = part._replace(flops=unrolled_flops(prog, twins[prog.name])
                           or part.flops)
    parts.append(part)
    if log:
      log(f"{w.algorithm} T={w.meta_batch_size} {prog.name}: "
          f"{part.seconds * 1e3:.1f} ms (compile {part.compile_s:.1f} s)")
  rate = matmul_flops_per_s or throughput.matmul_flops_per_s()
  return Breakdown(w, mode, with_differences(tuple(parts)), rate)


def profile_peer(python: str, w: Workload, *, warmup: int = 1,
                 steps: int = 3, seed: int = 0) -> dict[str, Any]:
  """The PyTorch peer's profile of ``w``: it warms up, times ``steps``
  meta-steps (``step_s_median``), then profiles ``steps`` more
  (``profile_s``: bucket -> seconds of self CPU time per meta-step;
  ``profile_total_s``, ``profile_wall_s``).

  Raises:
    RuntimeError: with the last line of the peer's stderr when it fails.
  """
  # pylint: disable=protected-access
  cmd = peer.peer_command(python, w, Timing(warmup, 1, steps), seed)
  proc = subprocess.run(cmd + ["--profile"], capture_output=True, text=True,
                        env=peer._env(), check=False)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f"peer exited with status {proc.returncode}: "
                       f"{peer._last_line(proc.stderr)}")
  return json.loads(lines[-1])
