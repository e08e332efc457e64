"""The compiled meta-step programs of one training run, one per phase.

A program is compiled once for its phase, the number of meta-steps per call
and the data's shapes, then reused. With a background thread
(``compile_ahead``), the first request traces every phase the run will go
through and hands their XLA compiles to that thread in order: the first
phase's compiles while the later ones trace, the later ones while the first
phase trains, so a phase switch rarely waits. On a few CPU cores the
background compile shares them with training; on an accelerator it uses
cores that sit idle.
"""

import concurrent.futures
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from metalearn import profiling
from metalearn.schedules import Phase
from metalearn.schedules import PhasePlan

# phase, meta-steps per call -> jitted step(state, data, key).
StepBuilder = Callable[[Phase, int], Callable]


class Programs(NamedTuple):
  """A run's programs (see :func:`start`).

  Attributes:
    compiled: (phase, capacity, data signature) -> compiled program, or a
      ``Future`` of ``(program, start, end)`` while it compiles ahead.
    build: ``(phase, count) -> jitted step``.
    ahead: the background thread's executor, or None.
    phases: the run's phases from its first step on, in order.
  """
  compiled: dict
  build: StepBuilder
  ahead: Optional[concurrent.futures.ThreadPoolExecutor]
  phases: tuple


def phases_from(plan: PhasePlan, step: int) -> tuple:
  """The distinct phases a run from ``step`` goes through, in order."""
  phases = [plan.phase_at(step)] + [plan.phase_at(s) for s in plan.switches()
                                    if s > step]
  return tuple(dict.fromkeys(phases))


def start(build: StepBuilder, plan: PhasePlan, step: int,
          compile_ahead: bool) -> Programs:
  """No programs yet, for a run of ``plan`` from ``step``; a background
  thread only with ``compile_ahead`` and more than one phase to come."""
  phases = phases_from(plan, step)
  ahead = (concurrent.futures.ThreadPoolExecutor(
      1, thread_name_prefix="compile-ahead")
           if compile_ahead and len(phases) > 1 else None)
  return Programs({}, build, ahead, phases)


def _signature(tree) -> Any:
  return jax.tree.map(lambda x: (np.shape(x), str(getattr(x, "dtype", ""))),
                      tree)


def _lower(programs: Programs, phase: Phase, capacity: int, state, data,
           key):
  args = (state, data, key) + ((np.int32(capacity),) if capacity > 1 else ())
  return programs.build(phase, capacity).lower(*args)


def _timed_compile(lowered) -> tuple[Callable, float, float]:
  """``(compiled, start, end)`` in ``time.perf_counter`` seconds."""
  began = time.perf_counter()
  return lowered.compile(), began, time.perf_counter()


def _compile_ahead(programs: Programs, capacity: int, state, data,
                   key) -> None:
  for phase in programs.phases:
    lowered = _lower(programs, phase, capacity, state, data, key)
    programs.compiled[(phase, capacity, _signature(data))] = (
        programs.ahead.submit(_timed_compile, lowered))


def get(programs: Programs, phase: Phase, capacity: int, state, data, key,
        training_since: Optional[float]) -> tuple[Callable, float, float]:
  """The compiled program for (phase, shapes); compiles it once.

  With ``capacity > 1`` the program takes the call's length as a fourth
  argument (``step(state, data, key, count)``), so calls that end early at a
  mark or a phase switch reuse it instead of compiling another.

  Args:
    programs: from :func:`start`.
    phase, capacity: the program's phase and meta-steps per call.
    state, data, key: the call's arguments (their shapes pick the program).
    training_since: ``time.perf_counter()`` at the run's first call, or
      None before it.

  Returns:
    ``(program, waited, ahead)``: the seconds spent here tracing,
    compiling or waiting for a background compile (0 for a program used
    before), and the seconds that background compile ran after training
    had started.
  """
  cache_key = (phase, capacity, _signature(data))
  began = time.perf_counter()
  if not programs.compiled and programs.ahead is not None:
    _compile_ahead(programs, capacity, state, data, key)
  entry = programs.compiled.get(cache_key)
  ahead = 0.0
  if entry is None:
    compiled, _, _ = _timed_compile(
        _lower(programs, phase, capacity, state, data, key))
  elif isinstance(entry, concurrent.futures.Future):
    compiled, compile_start, compile_end = entry.result()
    if training_since is not None:
      ahead = max(0.0, min(compile_end, began)
                  - max(compile_start, training_since))
  else:
    return entry, 0.0, 0.0
  programs.compiled[cache_key] = compiled
  return compiled, max(time.perf_counter() - began, 1e-9), ahead


def finish(programs: Programs) -> Optional[int]:
  """Lets the background thread end once its queue is done (a run stopped
  early does not wait for it) and returns the largest XLA scratch of the
  compiled programs used, or None where the backend does not report it."""
  if programs.ahead is not None:
    programs.ahead.shutdown(wait=False)
  temp = [profiling.compiled_temp_bytes(p)
          for p in programs.compiled.values()
          if not isinstance(p, concurrent.futures.Future)]
  temp = [t for t in temp if t is not None]
  return max(temp) if temp else None
