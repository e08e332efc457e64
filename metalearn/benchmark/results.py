"""Benchmark rows: speedups, the markdown table, ``results.jsonl`` files.

Pure apart from :func:`read_results` and :func:`write_results`, which are
the only functions here that touch files.
"""

import json
import os
from typing import NamedTuple, Optional, Sequence

import jax

from metalearn import host_memory


class Row(NamedTuple):
  """One measured (workload, mode); ``error`` is set when it failed.

  The workload fields are those of
  :class:`metalearn.benchmark.workloads.Workload`; times are seconds per
  meta-step, memory is in bytes; ``widths`` is ResNet-12's, dash-joined
  (empty for conv-4). The ``peer`` fields are those of the PyTorch peer
  (:mod:`metalearn.benchmark.peer`) timed on the same workload in the same
  run: ``vs_peer`` is ``tasks_per_s`` over ``peer_tasks_per_s``.
  """
  algorithm: str
  mode: str
  meta_batch_size: int
  n_way: int
  k_shot: int
  n_query: int
  inner_steps: int
  filters: int
  num_blocks: int = 4
  msl_epochs: int = 10
  steps_per_epoch: int = 500
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
  model: str = "conv4"
  widths: str = ""
  image_size: int = 28
  channels: int = 1
  peer: str = ""
  peer_tasks_per_s: Optional[float] = None
  peer_step_s_median: Optional[float] = None
  vs_peer: Optional[float] = None
  peer_error: Optional[str] = None


def _workload_key(r: Row) -> tuple:
  return (r.algorithm, r.meta_batch_size, r.n_way, r.k_shot, r.n_query,
          r.inner_steps, r.filters, r.num_blocks, r.msl_epochs,
          r.steps_per_epoch, r.model, r.widths, r.image_size, r.channels)


def with_speedups(rows: Sequence[Row]) -> list[Row]:
  """Sets ``speedup`` = tasks/s over the ``plain`` row of the same workload."""
  base = {_workload_key(r): r.tasks_per_s for r in rows
          if r.mode == "plain" and r.tasks_per_s}
  return [r._replace(speedup=r.tasks_per_s / base[_workload_key(r)])
          if r.tasks_per_s and _workload_key(r) in base else r for r in rows]


def _mib(n: Optional[int]) -> str:
  return "" if n is None else f"{n / 2**20:.1f}"


_HEAD = ("| algorithm | mode | tasks | N-K-Q | inner steps | model | conv | "
         "devices | tasks/s | s/meta-step median [p25, p75] | speedup vs "
         "plain | compile s | XLA temp MiB | peak MiB |")


def _model_cell(r: Row) -> str:
  """``conv4-64``, ``resnet12-64-160-320-640``; the input if not 28x28x1."""
  name = (f"resnet12-{r.widths}" if r.model == "resnet12"
          else f"conv{r.num_blocks}-{r.filters}")
  if (r.image_size, r.channels) == (28, 1):
    return name
  return f"{name} {r.image_size}x{r.image_size}x{r.channels}"


_PEER_HEAD = " PyTorch tasks/s | metalearn / PyTorch |"


def _peer_cells(r: Row) -> str:
  """The two peer columns: the peer's tasks/s and ours over it."""
  if r.peer_error:
    return f" peer error: {r.peer_error} | |"
  rate = "" if r.peer_tasks_per_s is None else f"{r.peer_tasks_per_s:.1f}"
  ratio = "" if r.vs_peer is None else f"{r.vs_peer:.2f}x"
  return f" {rate} | {ratio} |"


def _table_line(r: Row, peer: bool = False) -> str:
  """One row of the markdown table (the error in place of the numbers),
  with the peer columns if ``peer``."""
  lead = (f"| {r.algorithm} | {r.mode} | {r.meta_batch_size} | "
          f"{r.n_way}-{r.k_shot}-{r.n_query} | {r.inner_steps} | "
          f"{_model_cell(r)} | {r.conv_impl} | {r.devices} | ")
  tail = _peer_cells(r) if peer else ""
  if r.error:
    return lead + f"error: {r.error} |" + " |" * 5 + tail
  speedup = "" if r.speedup is None else f"{r.speedup:.2f}x"
  return (lead + f"{r.tasks_per_s:.1f} | {r.step_s_median:.4f} "
          f"[{r.step_s_p25:.4f}, {r.step_s_p75:.4f}] | {speedup} | "
          f"{r.compile_s:.1f} | {_mib(r.xla_temp_bytes)} | "
          f"{_mib(r.peak_bytes)} |" + tail)


def markdown_table(rows: Sequence[Row]) -> str:
  """The rows as a markdown table, with the platform and memory sources.

  With a PyTorch peer in any row, two more columns: the peer's tasks/s on
  the same workload and ``vs_peer`` (metalearn / PyTorch).
  """
  peer = any(r.peer or r.peer_error for r in rows)
  head = _HEAD + (_PEER_HEAD if peer else "")
  lines = [head, "|" + "---|" * (head.count(" | ") + 1)]
  lines += [_table_line(r, peer) for r in rows]
  kinds = sorted({f"{r.platform} ({r.device_kind})" for r in rows
                  if r.platform})
  sources = sorted({r.peak_source for r in rows if r.peak_source})
  peers = sorted({r.peer for r in rows if r.peer})
  notes = (f"\nDevice: {', '.join(kinds)}; jax {jax.__version__}. Peak memory: "
           f"{', '.join(sources) or 'n/a'}. Timed chunks per row: "
           f"{max((r.chunks for r in rows), default=0)}."
           + (f" Peer: {', '.join(peers)}." if peers else "")
           + f" Host memory: {host_memory.describe()}.\n")
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
