"""The one meta-training loop behind ``train_and_evaluate`` and ``train_maml``.

A run is a sequence of phases (:class:`metalearn.schedules.Phase`: first or
second order, multi-step loss or not). Each phase is one compiled meta-step
program, built ahead of time the first time it is needed for a given number
of meta-steps per call and input shapes, then reused: compile time is
measured apart from training time (:mod:`metalearn.programs`; later
phases compile in the background while the first trains). The loop
stops early, at a chunk boundary, when a time budget runs out or on
SIGINT/SIGTERM, so the caller can save a checkpoint that a rerun resumes
from bit-identically.
"""

import contextlib
import signal
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from metalearn import programs as programs_lib
from metalearn.schedules import Phase
from metalearn.schedules import PhasePlan
from metalearn.step import MetaState
from metalearn.step import StepOutput

StepBuilder = programs_lib.StepBuilder
# The stop reasons of a run.
DONE, OUT_OF_TIME, INTERRUPTED = "done", "out_of_time", "interrupted"


class Interrupted(Exception):
  """Training stopped on a signal after saving; rerun to resume.

  Attributes:
    step: the meta-step reached (and saved).
    signum: the signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
  """

  def __init__(self, step: int, signum: int):
    super().__init__(f"stopped at meta-step {step} by "
                     f"{signal.Signals(signum).name}; rerun the same command "
                     "to resume")
    self.step = step
    self.signum = signum


class Chunk(NamedTuple):
  """Meta-steps ``[start, end)`` run by one call of a compiled program.

  Attributes:
    start, end: meta-step counts before and after the call.
    phase: the phase the program ran.
    output: :class:`metalearn.StepOutput` as numpy, leading [end - start].
    seconds: wall time of the call (no compiling).
    compiled: whether this call first compiled its program.
  """
  start: int
  end: int
  phase: Phase
  output: StepOutput
  seconds: float
  compiled: bool


class RunResult(NamedTuple):
  """What :func:`run` returns.

  Attributes:
    state: the state after the last meta-step run.
    stop: ``done``, ``out_of_time`` (``max_seconds`` reached) or
      ``interrupted`` (SIGINT or SIGTERM).
    signal: the signal number that interrupted, else None.
    train_seconds: time in meta-step calls, compiling excluded.
    compile_seconds: time training waited for programs to trace and
      compile (small when the persistent compilation cache has them).
    compile_ahead_seconds: time XLA compiled later phases' programs in the
      background while the run went on (``compile_ahead``; not in
      ``compile_seconds``).
    xla_temp_bytes: the largest XLA scratch of the compiled programs, or
      None where the backend does not report it.
  """
  state: MetaState
  stop: str
  signal: Optional[int]
  train_seconds: float
  compile_seconds: float
  xla_temp_bytes: Optional[int]
  compile_ahead_seconds: float = 0.0


@contextlib.contextmanager
def stop_requests(signals=(signal.SIGINT, signal.SIGTERM)
                 ) -> Iterator[Callable[[], Optional[int]]]:
  """Turns SIGINT/SIGTERM into a request polled between chunks.

  Yields a function returning the first signal received (or None). A second
  signal while one is pending raises ``KeyboardInterrupt`` at once. Outside
  the main thread (where handlers cannot be set) nothing is installed.
  """
  received = []

  def handler(signum, frame):
    del frame
    if received:
      raise KeyboardInterrupt(f"signal {signum} received twice")
    received.append(signum)

  if threading.current_thread() is not threading.main_thread():
    yield lambda: None
    return
  previous = {s: signal.signal(s, handler) for s in signals}
  try:
    yield lambda: received[0] if received else None
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def _as_numpy(out: StepOutput, scanned: bool, count: int) -> StepOutput:
  """Host copy of the first ``count`` meta-steps' metrics, with a leading
  [count] axis whether or not the program was scanned."""
  out = jax.device_get(out)
  return jax.tree.map(lambda a: np.asarray(a)[:count] if scanned
                      else np.asarray(a)[None], out)


def check_finite(loss: np.ndarray, start: int, hint: str) -> None:
  """Raises FloatingPointError naming the first non-finite meta-step."""
  loss = np.asarray(loss).reshape(-1)
  finite = np.isfinite(loss)
  if not finite.all():
    bad = int(np.argmin(finite))
    raise FloatingPointError(
        f"the meta-loss became {loss[bad]} at meta-step {start + bad + 1}; "
        f"stopping. {hint}".strip())


def _chunk_ends(start: int, plan: PhasePlan, marks: Sequence[int]
               ) -> list[int]:
  """Where calls must end: marks, phase switches and the last step."""
  ends = {m for m in (*marks, *plan.switches()) if start < m < plan.meta_steps}
  return sorted(ends | {plan.meta_steps})


def _postfix(out: StepOutput, tasks_per_step: int, seconds: float,
             count: int) -> dict:
  postfix = {"loss": f"{float(np.mean(out.loss)):.3f}"}
  if out.step_accuracy is not None:
    postfix["acc"] = f"{float(np.mean(out.step_accuracy[..., -1])):.3f}"
  postfix["tasks/s"] = f"{count * tasks_per_step / max(seconds, 1e-9):.0f}"
  return postfix


def run(state: MetaState,
        *,
        build_step: StepBuilder,
        plan: PhasePlan,
        data_at: Callable[[int], Any],
        key: jax.Array,
        steps_per_call: int = 1,
        tasks_per_step: int = 1,
        marks: Sequence[int] = (),
        on_chunk: Optional[Callable[[Chunk], None]] = None,
        on_mark: Optional[Callable[[int, MetaState, str], None]] = None,
        max_seconds: float = 0.0,
        label: str = "meta-train",
        progress: bool = True,
        nan_hint: str | Callable[[], str] = "",
        compile_ahead: bool = True) -> RunResult:
  """Runs meta-steps from ``state.step`` to ``plan.meta_steps``.

  Args:
    state: where to start (step 0, or a restored checkpoint).
    build_step: ``(phase, count) -> step``, jitted (see
      :func:`metalearn.make_meta_step` with ``steps_per_call=count``);
      called once per phase. For ``count > 1`` it is called as
      ``step(state, data, key, length)`` with an int32 ``length <= count``.
    plan: the phases (:func:`metalearn.schedules.phase_plan`).
    data_at: ``meta_step -> data`` passed to the step (the image array or
      pool, the same every time; or the next host batch).
    key: the run's key; steps fold in their index.
    steps_per_call: meta-steps per program call (``lax.scan``); >= 1.
    tasks_per_step: tasks in one meta-step, for the tasks/s shown.
    marks: meta-steps where a call must end and ``on_mark`` is called
      (evaluation, checkpoints).
    on_chunk: called after every call with its :class:`Chunk`.
    on_mark: ``(step, state, stop)`` at each mark and phase switch reached,
      at the end, and where the run stops early (``stop`` is the reason,
      else ``done``); never for a step the run started at.
    max_seconds: > 0: stop after this much training time.
    label: the progress bar's title.
    progress: show a progress bar with the phase and time left.
    nan_hint: appended to the error raised on a non-finite meta-loss (or a
      function giving it, called then).
    compile_ahead: compile the phases' programs in a background thread, so
      that later ones compile while the first one trains
      (:mod:`metalearn.programs`); off, each compiles when its phase
      starts.

  Returns:
    A :class:`RunResult`.

  Raises:
    FloatingPointError: the meta-loss is not finite; the state of the
      previous mark is what the caller last saw.
  """
  if steps_per_call < 1:
    raise ValueError(f"steps_per_call must be >= 1; got {steps_per_call}.")
  step = int(state.step)
  programs = programs_lib.start(build_step, plan, step, compile_ahead)
  training_since = None
  capacity = min(steps_per_call, plan.meta_steps)
  train_s = compile_s = ahead_s = 0.0
  stop, signum = DONE, None
  bar = tqdm(total=plan.meta_steps, initial=step, desc=label,
             disable=not progress, dynamic_ncols=True, smoothing=0.1)
  with bar, stop_requests() as requested:
    for end in _chunk_ends(step, plan, marks):
      segment_start = step
      while step < end and stop == DONE:
        phase = plan.phase_at(step)
        count = min(steps_per_call, end - step)
        data = data_at(step)
        what = plan.describe(step)
        bar.set_description(f"{label} [{what}]" if what else label)
        program, seconds, ahead_seconds = programs_lib.get(
            programs, phase, capacity, state, data, key, training_since)
        compile_s += seconds
        ahead_s += ahead_seconds
        t0 = time.perf_counter()
        training_since = training_since or t0
        if capacity > 1:
          state, out = program(state, data, key, np.int32(count))
        else:
          state, out = program(state, data, key)
        out = _as_numpy(out, scanned=capacity > 1, count=count)
        elapsed = time.perf_counter() - t0
        train_s += elapsed
        check_finite(out.loss, step,
                     nan_hint() if callable(nan_hint) else nan_hint)
        if on_chunk is not None:
          on_chunk(Chunk(step, step + count, phase, out, elapsed,
                         seconds > 0))
        step += count
        bar.update(count)
        bar.set_postfix(_postfix(out, tasks_per_step, elapsed, count))
        signum = requested()
        if signum is not None:
          stop = INTERRUPTED
        elif 0 < max_seconds <= train_s:
          stop = OUT_OF_TIME
      if on_mark is not None and step > segment_start:
        on_mark(step, state, stop)
      if stop != DONE:
        break
  temp = programs_lib.finish(programs)
  return RunResult(state, stop, signum, train_s, compile_s, temp, ahead_s)

