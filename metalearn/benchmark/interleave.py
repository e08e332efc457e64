"""Every mode of one workload compiled in one process and timed in turn.

On a machine whose speed drifts (a shared virtual machine: the same program
ran 15% faster or slower from one run to the next on the 2-core CPU of
docs/benchmarks.md), rows timed one after another measure the drift as much
as the modes. :func:`measure_interleaved` compiles and warms up every mode,
then times one chunk of the first mode, one of the second, and so on, and
repeats that ``timing.chunks`` times: a slow stretch falls on every mode
alike, and the medians compare the modes. The price: the modes share one
process, so no row has a memory peak of its own (``peak_bytes`` is None and
``peak_source`` is :data:`SHARED_PEAK`); XLA's scratch bytes stay exact.
"""

from typing import Any, NamedTuple, Optional, Sequence

import jax

from metalearn import profiling
from metalearn.benchmark.measure import Built
from metalearn.benchmark.measure import Timing
from metalearn.benchmark.measure import blank_row
from metalearn.benchmark.measure import build
from metalearn.benchmark.measure import calls_per_chunk
from metalearn.benchmark.measure import error_text
from metalearn.benchmark.measure import time_chunk
from metalearn.benchmark.measure import timed_row
from metalearn.benchmark.measure import warm_up
from metalearn.benchmark.results import Row
from metalearn.benchmark.workloads import Mode
from metalearn.benchmark.workloads import Workload
from metalearn.benchmark.workloads import make_problem
from metalearn.benchmark.workloads import parse_mode

SHARED_PEAK = "shared process (interleaved)"


class _Entry(NamedTuple):
  """One mode's compiled step and what its chunks measured so far."""
  mode: Mode
  built: Optional[Built] = None
  state: Any = None
  loss: Any = None
  times: tuple[float, ...] = ()
  error: Optional[str] = None


def _prepare(w: Workload, mode: Mode, timing: Timing, seed: int
             ) -> _Entry:
  """Compiles and warms up one mode (or records why it failed)."""
  try:
    built = build(
        w, mode, make_problem(w, seed, mode.conv,
                              block_remat=mode.block_remat),
        jax.random.key(seed))
    state = warm_up(built, timing, mode.steps_per_call)
  except Exception as e:  # pylint: disable=broad-except
    return _Entry(mode, error=error_text(e))
  return _Entry(mode, built, state)


def _time_one_chunk(entry: _Entry, timing: Timing) -> _Entry:
  """``entry`` after one more timed chunk (or its error)."""
  if entry.error is not None:
    return entry
  calls = calls_per_chunk(timing, entry.mode.steps_per_call)
  try:
    state, loss, seconds = time_chunk(entry.built, entry.state, calls)
  except Exception as e:  # pylint: disable=broad-except
    return _Entry(entry.mode, error=error_text(e))
  return entry._replace(state=state, loss=loss, times=entry.times + (
      seconds / (calls * entry.mode.steps_per_call),))


def measure_interleaved(w: Workload, modes: Sequence[Mode],
                        timing: Timing = Timing(), *,
                        seed: int = 0) -> list[Row]:
  """Times every mode of ``w`` chunk by chunk in turn (module docstring).

  Returns:
    One :class:`Row` per mode, in order (``speedup`` unset); a mode that
    failed to compile or run gets an error row and the others go on.
  """
  entries = [_prepare(w, mode, timing, seed) for mode in modes]
  for _ in range(timing.chunks):
    entries = [_time_one_chunk(entry, timing) for entry in entries]
  rows = []
  for entry in entries:
    if entry.error is not None:
      rows.append(blank_row(w, entry.mode, entry.error))
      continue
    rows.append(timed_row(
        w, entry.mode, entry.built, entry.times, entry.loss,
        calls_per_chunk(timing, entry.mode.steps_per_call)
        * entry.mode.steps_per_call, None, SHARED_PEAK))
  return rows


def interleaved_request(request: dict[str, Any]) -> list[dict[str, Any]]:
  """:func:`measure_interleaved` from and to JSON, for a fresh process.

  Args:
    request: ``{"workload": Workload fields, "modes": [spec, ...], "timing":
      Timing fields, "seed": int}``.
  """
  rows = measure_interleaved(
      Workload(**request["workload"]),
      [parse_mode(spec) for spec in request["modes"]],
      Timing(**request["timing"]), seed=request["seed"])
  return [row._asdict() for row in rows]


def measure_interleaved_isolated(w: Workload, modes: Sequence[Mode],
                                 timing: Timing, seed: int
                                 ) -> list[Row]:
  """:func:`measure_interleaved` in a fresh Python process; a crash (e.g.
  out of memory) becomes an error row for every mode."""
  request = {"workload": w._asdict(), "modes": [m.spec for m in modes],
             "timing": timing._asdict(), "seed": seed}
  try:
    return [Row(**r) for r in profiling.run_isolated(
        "metalearn.benchmark.interleave:interleaved_request", request)]
  except RuntimeError as e:
    return [blank_row(w, mode, error_text(e))
            for mode in modes]
