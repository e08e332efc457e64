"""A PyTorch peer timed beside metalearn, in a subprocess of its own.

:mod:`metalearn.benchmark.torch_peer` is a standalone script (torch and the
standard library only) that runs MAML or FOMAML the way a PyTorch user
writes it, at the shapes of a benchmark workload. This module runs it under
another interpreter, one that has torch, and puts its tasks/s beside the
rows of the same workload: ``vs_peer`` is metalearn's tasks/s over the
peer's, measured in the same run. metalearn never imports torch; only the
child process does.
"""

import json
import os
import subprocess
from typing import Any, Optional, Sequence

from metalearn.benchmark.results import Row
from metalearn.benchmark.workloads import INNER_LR
from metalearn.benchmark.workloads import OUTER_LR
from metalearn.benchmark.workloads import Workload

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "torch_peer.py")
SETUP = ('python3 -m venv /tmp/torch-peer && /tmp/torch-peer/bin/pip install '
         '"torch==2.13.0+cpu"')
# The peer's workload fields; the others (MAML++'s schedule, ResNet-12's
# widths) do not apply to the algorithms and model it runs.
_FIELDS = ("algorithm", "meta_batch_size", "n_way", "k_shot", "n_query",
           "inner_steps", "filters", "num_blocks", "image_size", "channels",
           "model")


def _env() -> dict[str, str]:
  """The environment without this interpreter's module paths."""
  return {k: v for k, v in os.environ.items()
          if k not in ("PYTHONPATH", "PYTHONHOME")}


def _last_line(text: str) -> str:
  return (text.strip().splitlines() or ["no output"])[-1][:300]


def check_peer_python(python: str) -> str:
  """Checks that ``python`` runs and imports torch; returns torch's version.

  Raises:
    ValueError: naming ``--peer_python`` and how to set the peer up, when
      ``python`` does not run or has no torch.
  """
  try:
    proc = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True, env=_env(), timeout=300, check=False)
  except OSError as e:
    raise ValueError(f"--peer_python={python!r} does not run: {e}. Set up "
                     f"the PyTorch peer with: {SETUP}") from e
  if proc.returncode != 0:
    raise ValueError(f"--peer_python={python!r} cannot import torch "
                     f"({_last_line(proc.stderr)}). Point it at an "
                     f"interpreter that has torch, e.g. set one up with: "
                     f"{SETUP}")
  return _last_line(proc.stdout)


def peer_command(python: str, w: Workload, timing: Any, seed: int = 0, *,
                 script: str = SCRIPT) -> list[str]:
  """The command line that times workload ``w`` with the peer.

  Args:
    python: the interpreter (one with torch).
    w: the workload; the peer runs ``maml`` and ``fomaml`` on conv-4 and
      exits with an error for others.
    timing: a :class:`metalearn.benchmark.measure.Timing` (warm-up
      meta-steps, timed chunks, meta-steps per chunk).
    seed: seeds the peer's parameters, data and tasks.
    script: the peer script.
  """
  values = {f: getattr(w, f) for f in _FIELDS}
  values.update(warmup=timing.warmup, chunks=timing.chunks,
                steps_per_chunk=timing.steps_per_chunk, seed=seed,
                inner_lr=INNER_LR, outer_lr=OUTER_LR)
  return [python, script] + [f"--{k}={v}" for k, v in values.items()]


def measure_peer(python: str, w: Workload, timing: Any, seed: int = 0, *,
                 script: str = SCRIPT) -> dict[str, Any]:
  """Runs the peer on ``w`` in a subprocess; returns its JSON result.

  Raises:
    RuntimeError: with the last line of the peer's stderr when it fails.
  """
  proc = subprocess.run(peer_command(python, w, timing, seed, script=script),
                        capture_output=True, text=True, env=_env(),
                        check=False)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f"peer exited with status {proc.returncode}: "
                       f"{_last_line(proc.stderr)}")
  return json.loads(lines[-1])


def describe(result: dict[str, Any]) -> str:
  """``torch-loop (torch 2.13.0+cpu, 2 threads)`` from a peer result."""
  return (f"{result.get('peer', 'peer')} (torch "
          f"{result.get('torch_version', '?')}, "
          f"{result.get('threads', '?')} threads)")


def with_peer(rows: Sequence[Row], result: Optional[dict[str, Any]] = None,
              error: Optional[str] = None) -> list[Row]:
  """``rows`` (one workload's) with the peer's result or error set.

  Sets ``peer``, ``peer_tasks_per_s``, ``peer_step_s_median`` and, on each
  row that has a tasks/s, ``vs_peer`` = its tasks/s over the peer's; or
  ``peer_error``.
  """
  if result is None:
    return [r._replace(peer_error=error) for r in rows]
  peer_rate = result["tasks_per_s"]
  return [r._replace(peer=describe(result), peer_tasks_per_s=peer_rate,
                     peer_step_s_median=result["step_s_median"],
                     vs_peer=r.tasks_per_s / peer_rate
                     if r.tasks_per_s and peer_rate else None)
          for r in rows]
