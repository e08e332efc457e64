"""Host memory: stop XLA's CPU scratch from being page-faulted in at every
call.

XLA's CPU backend allocates a program's scratch at every call (hundreds of
MiB for a meta-step) and frees it after. glibc serves allocations that large
with fresh ``mmap`` pages and unmaps them on free, so every call faults its
whole scratch in again, one zeroed 4 KiB page at a time: a third of a CPU
meta-step (docs/benchmarks.md). Two ways out:

- **Huge pages** (the binaries' default): glibc's tunable
  ``glibc.malloc.hugetlb=1`` has it ask for transparent huge pages for such
  allocations, 2 MiB a fault. glibc reads tunables when a process starts, so
  :func:`reexec_with_huge_pages` restarts a binary once with it set, and
  :func:`env_with_huge_pages` gives child processes the same environment.
  Effective where the kernel's transparent huge pages are ``madvise`` (the
  common default) or ``always``; harmless elsewhere.
- **Keeping freed pages** (:func:`keep_freed_pages`, for a notebook or any
  process already running): one malloc arena that never unmaps and keeps up
  to 2 GiB of freed memory, so most calls reuse the same pages (now and
  then one still faults its scratch in afresh, for a reason not
  established: tests/test_host_memory.py reads the median call). Call it
  before JAX first computes. It makes compiling slower (one arena for
  XLA's compiler threads: 10 s became 16 s for one meta-step), so the
  binaries use huge pages instead.

``METALEARN_HOST_MALLOC=default`` leaves glibc alone (to measure against it).
"""

import ctypes
import ctypes.util
import os
import sys
from typing import Mapping

ENV = "METALEARN_HOST_MALLOC"
SETTINGS = ("huge_pages", "default")
TUNABLE = "glibc.malloc.hugetlb=1"
_REEXEC_MARK = "METALEARN_REEXEC_HUGE_PAGES"
# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_KEEP_BYTES = 2**31 - 1  # mallopt takes an int.

_kept = False


def setting(environ: Mapping[str, str] = os.environ) -> str:
  """``$METALEARN_HOST_MALLOC`` (``huge_pages`` unless set), checked."""
  value = environ.get(ENV, "").strip().lower() or "huge_pages"
  if value not in SETTINGS:
    raise ValueError(f"{ENV}={value!r} is invalid: must be one of "
                     f"{', '.join(SETTINGS)}.")
  return value


def env_with_huge_pages(environ: Mapping[str, str] = os.environ
                        ) -> dict[str, str]:
  """``environ`` with :data:`TUNABLE` added to ``GLIBC_TUNABLES`` (on Linux,
  unless the setting is ``default``): for a child process."""
  env = dict(environ)
  tunables = env.get("GLIBC_TUNABLES", "")
  if (sys.platform.startswith("linux") and setting(env) == "huge_pages"
      and TUNABLE not in tunables.split(":")):
    env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, TUNABLE) if t)
  return env


def huge_pages_in_effect() -> bool:
  """Whether this process started with :data:`TUNABLE` (on Linux)."""
  return (sys.platform.startswith("linux") and
          TUNABLE in os.environ.get("GLIBC_TUNABLES", "").split(":"))


def reexec_with_huge_pages() -> None:
  """Restarts this process, same interpreter and command line, with
  :data:`TUNABLE` set, unless it is set already, the setting is
  ``default``, or this is not Linux. Call it first thing in a binary's
  entry point, never from library code: the process is replaced."""
  env = env_with_huge_pages()
  if env == dict(os.environ) or os.environ.get(_REEXEC_MARK):
    return
  env[_REEXEC_MARK] = "1"
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def keep_freed_pages() -> bool:
  """Has glibc keep and reuse freed pages (the module docstring). Returns
  whether it is in effect: False off Linux, without glibc, when glibc
  refused, or when the setting is ``default``."""
  global _kept
  if _kept or setting() == "default" or not sys.platform.startswith("linux"):
    return _kept
  try:
    mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
  except (OSError, AttributeError):  # Not glibc (e.g. musl).
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  _kept = all(mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP_BYTES)))
  return _kept


def describe() -> str:
  """``huge_pages``, ``keep_freed_pages`` or ``default``: what this process
  does (for report headers)."""
  if huge_pages_in_effect():
    return "huge_pages"
  return "keep_freed_pages" if _kept else "default"
