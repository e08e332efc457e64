"""Metrics to JSON lines, and to TensorBoard event files when it is installed.

TensorBoard is optional (the ``tensorboard`` extra): without it only
``metrics.jsonl`` is written. Neither path needs TensorFlow.
"""

import json
import time
from pathlib import Path
from typing import Mapping


def _tensorboard_writer(logdir: Path):
  """An EventFileWriter, or None when tensorboard is not installed."""
  try:
    from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return event_file_writer.EventFileWriter(str(logdir))


class MetricsWriter:
  """Appends rows to ``workdir/metrics.jsonl`` and scalars to TensorBoard."""

  def __init__(self, workdir: str | Path):
    self.path = Path(workdir) / "metrics.jsonl"
    self._tb = _tensorboard_writer(Path(workdir) / "tensorboard")

  def write(self, step: int, row: Mapping) -> None:
    """Writes ``{"step": step, **row}``; numeric fields also go to TensorBoard."""
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, **row}) + "\n")
    if self._tb is not None:
      from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top,g-multiple-import
      values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                for k, v in row.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
      self._tb.add_event(event_pb2.Event(
          wall_time=time.time(), step=step,
          summary=summary_pb2.Summary(value=values)))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
