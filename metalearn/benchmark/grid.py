"""Runs a grid of (workload, mode) rows, with the PyTorch peer beside them.

Each row is measured by :mod:`metalearn.benchmark.measure` (one process per
row with ``isolate``) or, with ``interleave``, every mode of a workload
together by :mod:`metalearn.benchmark.interleave`; with ``peer_python`` each
workload is also timed by the PyTorch peer (:mod:`metalearn.benchmark.peer`)
in the same run.
"""

from typing import Callable, Optional, Sequence

from metalearn.benchmark import interleave as interleave_lib
from metalearn.benchmark import peer as peer_lib
from metalearn.benchmark.measure import Timing
from metalearn.benchmark.measure import error_text
from metalearn.benchmark.measure import measure_isolated
from metalearn.benchmark.measure import measure_safe
from metalearn.benchmark.results import Row
from metalearn.benchmark.results import with_speedups
from metalearn.benchmark.workloads import Mode
from metalearn.benchmark.workloads import Workload


def _summary(row: Row) -> str:
  return (f"{row.algorithm} T={row.meta_batch_size} {row.mode}: "
          + (row.error or f"{row.tasks_per_s:.1f} tasks/s, compile "
             f"{row.compile_s:.1f}s"))


def _peer_rows(rows: Sequence[Row], peer_python: str, w: Workload,
               timing: Timing, seed: int,
               log: Optional[Callable[[str], None]]) -> list[Row]:
  """``rows`` of ``w`` with the PyTorch peer's measurement (or error)."""
  try:
    rows = peer_lib.with_peer(
        rows, peer_lib.measure_peer(peer_python, w, timing, seed))
  except (RuntimeError, ValueError, KeyError, TypeError) as e:
    rows = peer_lib.with_peer(rows, error=error_text(e))
  if log:
    log(f"{w.algorithm} T={w.meta_batch_size} PyTorch peer: "
        + (rows[0].peer_error or f"{rows[0].peer_tasks_per_s:.1f} tasks/s, "
           f"{rows[0].peer}"))
  return rows


def run_grid(workloads: Sequence[Workload], modes: Sequence[Mode],
             timing: Timing = Timing(), *, isolate: bool = False,
             interleave: bool = False, seed: int = 0, peer_python: str = "",
             log: Optional[Callable[[str], None]] = None) -> list[Row]:
  """Measures every workload in every mode; returns rows with speedups.

  Args:
    workloads: from :func:`metalearn.benchmark.workloads.grid`.
    modes: from :func:`metalearn.benchmark.workloads.parse_mode`; put
      ``plain`` first to get speedups.
    timing: see :class:`Timing`.
    isolate: one fresh process per row, so ``peak_bytes`` belongs to that row
      alone (and a crash or out-of-memory becomes an ``error`` row); with
      ``interleave``, one per workload.
    interleave: compile every mode of a workload in one process and time
      their chunks in turn (:mod:`metalearn.benchmark.interleave`), so that
      the machine's drift falls on every mode alike; the rows then have no
      memory peak of their own.
    seed: as in :func:`metalearn.benchmark.measure.measure`.
    peer_python: an interpreter that has torch, or empty. Given, each
      workload is also timed by the PyTorch peer
      (:mod:`metalearn.benchmark.peer`) in a subprocess with the same
      timing, right after its rows, and the rows get its tasks/s and
      ``vs_peer``; a failed peer run becomes ``peer_error``.
    log: called with a one-line summary after each row.

  Raises:
    ValueError: when ``peer_python`` is given but cannot import torch
      (checked before anything is measured).
  """
  if peer_python:
    peer_lib.check_peer_python(peer_python)
  one = measure_isolated if isolate else measure_safe
  together = (interleave_lib.measure_interleaved_isolated if isolate
              else interleave_lib.measure_interleaved)
  rows = []
  for w in workloads:
    if interleave:  # Every mode at once: the rows come together.
      own = together(w, modes, timing, seed=seed)
      for row in own if log else ():
        log(_summary(row))
    else:  # One row at a time, each logged as it is measured.
      own = []
      for mode in modes:
        own.append(one(w, mode, timing, seed))
        if log:
          log(_summary(own[-1]))
    if peer_python:
      own = _peer_rows(own, peer_python, w, timing, seed, log)
    rows += own
  return with_speedups(rows)
