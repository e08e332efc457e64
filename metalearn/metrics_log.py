"""Metrics to JSON lines, and to TensorBoard event files when it is installed.

TensorBoard is optional (the ``tensorboard`` extra): without it only
``metrics.jsonl`` is written. Neither path imports TensorFlow: event files are
written with tensorboard's protos and record framing, not its TF-backed
``EventFileWriter``.

What a resumed run can rely on (``MetricsWriter(workdir, resume_step=s)``):

* ``metrics.jsonl`` is first cut back to the rows with ``step <= s`` and to
  lines that parse as JSON objects (a line half-written by ``kill -9`` is
  dropped). The cut file replaces the old one atomically (write to a
  temporary file, fsync, rename), so a crash during the cut leaves either
  the old or the new file. After that, each step's rows appear once.
* TensorBoard event files are append-only and are not rewritten. Instead the
  new event file starts with ``SessionLog(status=START)`` at step ``s``;
  TensorBoard's Python loader (``tensorboard --load_fast=false``) then
  discards earlier-written points with a step greater than ``s``. Other
  readers (the fast Rust loader, ``tbparse``, ...) may still show both.
"""

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Mapping, Optional


def _rows(text: str, resume_step: Optional[int]) -> list[str]:
  """The complete JSON-object lines of ``text`` with ``step <= resume_step``."""
  kept = []
  for line in text.split("\n"):
    try:
      row = json.loads(line)
    except ValueError:
      continue  # Blank, or half-written when a run was killed.
    if not isinstance(row, dict):
      continue
    if resume_step is not None and row.get("step", 0) > resume_step:
      continue
    kept.append(line)
  return kept


def _replace_atomically(path: Path, text: str) -> None:
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def truncate_jsonl(path: str | Path, resume_step: Optional[int]) -> None:
  """Drops broken lines and rows after ``resume_step`` from a JSONL file.

  The file is rewritten atomically, and only when something is dropped.

  Args:
    path: a ``metrics.jsonl``; nothing happens if it does not exist.
    resume_step: keep rows with ``step <= resume_step``; None keeps every
      complete row.
  """
  path = Path(path)
  if not path.exists():
    return
  text = path.read_text()
  kept = _rows(text, resume_step)
  new = "".join(line + "\n" for line in kept)
  if new != text:
    _replace_atomically(path, new)


class _EventFile:
  """An append-only TensorBoard event file; needs tensorboard, not TF."""

  def __init__(self, logdir: Path):
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    self._pb = event_pb2
    logdir.mkdir(parents=True, exist_ok=True)
    name = (f"events.out.tfevents.{int(time.time()):010d}."
            f"{socket.gethostname()}.{os.getpid()}.{id(self)}")
    self._file = open(logdir / name, "ab")  # pylint: disable=consider-using-with
    self._records = record_writer.RecordWriter(self._file)
    self.add(event_pb2.Event(file_version="brain.Event:2"))

  def add(self, event) -> None:
    if not event.wall_time:
      event.wall_time = time.time()
    self._records.write(event.SerializeToString())
    self._file.flush()

  def start_session(self, step: int) -> None:
    """Marks a restart: readers purge later-written points past ``step``."""
    self.add(self._pb.Event(step=step, session_log=self._pb.SessionLog(
        status=self._pb.SessionLog.START)))

  def scalars(self, step: int, row: Mapping) -> None:
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in row.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if values:
      self.add(self._pb.Event(step=step,
                              summary=summary_pb2.Summary(value=values)))

  def close(self) -> None:
    self._file.close()


def _event_file(logdir: Path) -> Optional[_EventFile]:
  """An event file, or None when tensorboard is not installed."""
  try:
    return _EventFile(logdir)
  except ImportError:
    return None


class MetricsWriter:
  """Appends rows to ``workdir/metrics.jsonl`` and scalars to TensorBoard.

  Args:
    workdir: the run directory.
    resume_step: the step the run resumes from (the restored state's step);
      rows written after it by an earlier attempt are dropped first. None
      (a run that does not resume) keeps all complete rows.
    active: False: write nothing at all (every process but the writer of a
      multi-process run, see :mod:`metalearn.distributed`).
  """

  def __init__(self, workdir: str | Path, *,
               resume_step: Optional[int] = None, active: bool = True):
    workdir = Path(workdir)
    self.active = active
    self.path = workdir / "metrics.jsonl"
    self._tb = None
    if not active:
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    truncate_jsonl(self.path, resume_step)
    self._tb = _event_file(workdir / "tensorboard")
    if self._tb is not None and resume_step is not None:
      self._tb.start_session(resume_step)

  def write(self, step: int, row: Mapping) -> None:
    """Writes ``{"step": step, **row}``; numeric fields also go to TensorBoard.

    The JSON line goes out in one ``write`` call and is flushed, so a kill
    leaves at most one partial last line, which the next resume drops.
    """
    if not self.active:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, **row}) + "\n")
    if self._tb is not None:
      self._tb.scalars(step, row)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
