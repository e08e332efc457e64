"""Keeping a failed orbax restore to one line.

A restore that fails inside orbax leaves aborted read coroutines whose
errors (and asyncio's "Event loop is closed") surface later as hundreds of
lines of tracebacks. :func:`quiet` mutes orbax's loggers while a step is
read, :func:`reason` turns an orbax/tensorstore error into one short line,
and from the first restore on the late noise is dropped process-wide.
A failed *save* is reported by orbax's background threads as several ERROR
records with tracebacks before the error reaches the caller;
:func:`drop_save_errors_from_now_on` drops those records (the caller reports
the failure itself, in one line: :mod:`metalearn.checkpoints`), and
:func:`write_failure` names the cause of a failed write.
"""

import contextlib
import errno
import logging
import re
import sys
import threading
from typing import Any, Optional

_NOISY_LOGGERS = ("absl", "orbax", "asyncio")
_STATUS = re.compile(r"\b([A-Z][A-Z_]{3,}): ")
_KEY = re.compile(r'Error reading "([^"]+)"')
_FILE = re.compile(r'local file "([^"]+)"')


def reason(exc: BaseException) -> str:
  """One short line: the status and file of an orbax/tensorstore error."""
  chain = _chain(exc)
  for err in chain:
    text = " ".join(str(err).split())
    status, key = _STATUS.search(text), _KEY.search(text)
    if status and key:
      files = _FILE.findall(text)
      where = f" in {files[-1]}" if files else ""
      return f'{status.group(1)} reading "{key.group(1)}"{where}'
  for err in chain:
    if getattr(err, "filename", None):
      return f"{type(err).__name__}: {err.filename}"
  first = (str(chain[-1]).strip().splitlines() or [""])[0]
  return f"{type(chain[-1]).__name__}: {first[:160]}"


def _is_loop_noise(exc: Optional[BaseException]) -> bool:
  return isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)


def _is_orbax_coroutine(obj: Any) -> bool:
  code = getattr(obj, "cr_code", None)
  return code is not None and "orbax" in code.co_filename


class _LoopNoiseFilter(logging.Filter):

  def filter(self, record):
    exc = record.exc_info[1] if record.exc_info else None
    message = record.getMessage()
    # A read that a failed restore abandoned reports its own error later,
    # when its task is collected: "Task exception was never retrieved".
    return not (_is_loop_noise(exc) or "Event loop is closed" in message
                or "exception was never retrieved" in message)


_noise_filter_installed = False


def drop_loop_noise_from_now_on() -> None:
  """Silences the late errors of orbax reads aborted by a failed restore.

  When a restore fails, orbax's pending read coroutines are closed or
  garbage-collected later and report through ``sys.unraisablehook`` or a
  thread's excepthook (one traceback each, often "Event loop is closed"),
  sometimes before the failure itself is handled. Called before the first
  restore: from then on, unraisable errors of orbax coroutines, "Event
  loop is closed" errors and asyncio's "Task exception was never retrieved"
  are dropped; everything else still reaches the hooks.
  """
  global _noise_filter_installed
  if _noise_filter_installed:
    return
  _noise_filter_installed = True
  logging.getLogger("asyncio").addFilter(_LoopNoiseFilter())
  unraisable, thread_hook = sys.unraisablehook, threading.excepthook

  def quiet_unraisable(info):
    if not (_is_loop_noise(info.exc_value)
            or _is_orbax_coroutine(info.object)):
      unraisable(info)

  def quiet_thread(args):
    if not _is_loop_noise(args.exc_value):
      thread_hook(args)

  sys.unraisablehook, threading.excepthook = quiet_unraisable, quiet_thread


@contextlib.contextmanager
def quiet():
  """Mutes orbax's and asyncio's loggers for the duration of a restore."""
  loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.CRITICAL + 1)
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


# A failed write's cause, as orbax, tensorstore or the OS word it.
_WRITE_CAUSES = (
    ("no space left on device", (errno.ENOSPC, errno.EDQUOT),
     ("No space left on device", "Disk quota exceeded")),
    ("permission denied", (errno.EACCES, errno.EPERM),
     ("Permission denied", "PERMISSION_DENIED")),
    ("read-only file system", (errno.EROFS,), ("Read-only file system",)),
    ("a directory vanished", (errno.ENOENT,),
     ("No such file or directory",)),
)


def _chain(exc: BaseException) -> list[BaseException]:
  chain, seen = [], exc
  while seen is not None and len(chain) < 10:
    chain.append(seen)
    seen = seen.__cause__ or seen.__context__
  return chain


def write_failure(exc: BaseException) -> Optional[str]:
  """``"no space left on device"``, ``"permission denied"``, ``"read-only
  file system"`` or ``"a directory vanished"`` when ``exc`` (or its cause)
  is that OS error, however wrapped; else None."""
  for err in _chain(exc):
    for cause, codes, words in _WRITE_CAUSES:
      if isinstance(err, OSError) and err.errno in codes:
        return cause
      if any(w in str(err) for w in words):
        return cause
  return None


class _SaveErrorFilter(logging.Filter):
  """Drops orbax's ERROR records (background save threads) and the noise
  of its aborted coroutines."""

  def filter(self, record):
    return not (record.levelno >= logging.ERROR
                and "orbax" in (record.pathname or ""))


_save_filter_installed = False


def drop_save_errors_from_now_on() -> None:
  """Silences orbax's own ERROR logging of failed saves, process-wide.

  Orbax re-raises a failed save's error at the next save or wait, which
  :class:`metalearn.checkpoints.Checkpointer` turns into one line; the
  several tracebacks its threads log first say nothing more.
  """
  global _save_filter_installed
  if _save_filter_installed:
    return
  _save_filter_installed = True
  for name in ("absl", "orbax"):
    logging.getLogger(name).addFilter(_SaveErrorFilter())
