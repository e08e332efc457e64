"""Measuring helpers shared by the comparison and the benchmark.

Memory: XLA's scratch bytes of a compiled program (exact, independent of run
order) and the runtime peak (the device's ``peak_bytes_in_use`` where the
backend reports it, else the process's peak RSS). Isolation: run a function
in a fresh Python process so that its memory peak is its own.
"""

import json
import os
import platform
from pathlib import Path
import resource
import subprocess
import sys
from typing import Any, Optional, Sequence

import jax

from metalearn import host_memory


def compiled_temp_bytes(compiled) -> Optional[int]:
  """XLA's scratch bytes of a compiled program, or None if not reported."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  return None if analysis is None else int(analysis.temp_size_in_bytes)


def peak_memory(devices: Optional[Sequence[jax.Device]] = None
               ) -> tuple[int, str]:
  """``(bytes, source)``: the largest device peak, else the process's RSS.

  ``source`` is ``device_peak_bytes_in_use`` or ``process_peak_rss``.
  """
  peaks = []
  for d in devices or jax.local_devices():
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if not stats or "peak_bytes_in_use" not in stats:
      break
    peaks.append(int(stats["peak_bytes_in_use"]))
  else:
    if peaks:
      return max(peaks), "device_peak_bytes_in_use"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss * (1 if sys.platform == "darwin" else 1024), "process_peak_rss"


def run_isolated(function: str, request: Any) -> Any:
  """Calls ``function(request)`` in a fresh Python process.

  Args:
    function: ``"package.module:name"``; the function takes the JSON-able
      ``request`` and returns a JSON-able result.
    request: sent as JSON on the child's stdin.

  Returns:
    The child's result.

  Raises:
    RuntimeError: with the last line of the child's stderr when it fails.
  """
  module, _, name = function.partition(":")
  root = str(Path(__file__).resolve().parents[1])
  path = os.environ.get("PYTHONPATH")
  env = {**host_memory.env_with_huge_pages(),
         "PYTHONPATH": root + (os.pathsep + path if path else "")}
  code = ("import json, sys, importlib; "
          f"f = getattr(importlib.import_module({module!r}), {name!r}); "
          "r = f(json.loads(sys.stdin.read())); "
          "print('\\n' + json.dumps(r), flush=True)")
  proc = subprocess.run([sys.executable, "-c", code],
                        input=json.dumps(request), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, env=env,
                        check=False)
  sys.stderr.write(proc.stderr[-4000:] if proc.returncode else "")
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
    raise RuntimeError(f"{function} exited with status {proc.returncode}: "
                       f"{tail}")
  return json.loads(lines[-1])


def _git(*args: str) -> str:
  root = Path(__file__).resolve().parents[1]
  try:
    return subprocess.run(["git", *args], cwd=root, capture_output=True,
                          text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return ""


def environment() -> dict:
  """Machine, software and commit, for report headers."""
  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f
                 if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  commit = _git("rev-parse", "--short", "HEAD")
  dirty = bool(_git("status", "--porcelain"))
  return {
      "device": f"{dev.platform} ({dev.device_kind})",
      "device_count": jax.device_count(),
      "cpu": cpu, "cpu_count": os.cpu_count(),
      "load_average_at_start": (list(os.getloadavg())
                                if hasattr(os, "getloadavg") else None),
      "python": platform.python_version(), "jax": jax.__version__,
      "host_malloc": host_memory.describe(),
      "commit": (commit + ("+uncommitted changes" if dirty else "")) or
                "unknown",
  }
