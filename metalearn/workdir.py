"""One run per workdir: an exclusive lock that names its holder.

``with workdir.claim(path): ...`` takes ``path/.lock``: an ``fcntl.flock``
on the open file (the kernel drops it when the process dies, ``kill -9``
included) plus a JSON record of the holder (host, pid, start time), so that
a second writer is refused with one line naming the first::

  workdir /runs/a is in use by process 4242 on host1 (since 2026-01-01 ...)

A record left behind by a process that no longer holds the lock (killed, or
gone from this host) is taken over with one warning line. Under
``jax.distributed`` only process 0 (:func:`metalearn.distributed.is_writer`)
takes the lock; the others share the run it guards. A process may claim a
path it already holds (nested claims are one claim).
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
from pathlib import Path
import socket
import time
from typing import Iterator, NamedTuple, Optional

from metalearn import distributed

LOCK_FILE = ".lock"

log = logging.getLogger(__name__)

_held: dict[Path, int] = {}  # path -> nesting depth, in this process.


class WorkdirInUse(ValueError):
  """Another process holds the workdir's lock."""


class Holder(NamedTuple):
  """Who holds (or held) a workdir's lock."""
  host: str
  pid: int
  since: str

  def describe(self) -> str:
    return f"process {self.pid} on {self.host} (since {self.since})"


def _me() -> Holder:
  return Holder(socket.gethostname(), os.getpid(),
                time.strftime("%Y-%m-%d %H:%M:%S %Z"))


def _read_holder(fd: int) -> Optional[Holder]:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    data = json.loads(os.read(fd, 4096) or b"null")
    return Holder(str(data["host"]), int(data["pid"]), str(data["since"]))
  except (OSError, ValueError, TypeError, KeyError):
    return None


def _write_holder(fd: int, holder: Optional[Holder]) -> None:
  os.ftruncate(fd, 0)
  if holder is not None:
    os.pwrite(fd, json.dumps(holder._asdict()).encode(), 0)
  os.fsync(fd)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def holder(path: str | os.PathLike) -> Optional[Holder]:
  """The recorded holder of ``path``'s lock, or None (never locked, or
  released cleanly)."""
  try:
    fd = os.open(Path(path) / LOCK_FILE, os.O_RDONLY)
  except OSError:
    return None
  try:
    return _read_holder(fd)
  finally:
    os.close(fd)


def _stale_note(path: Path, old: Holder) -> str:
  if old.host != socket.gethostname():
    why = "it does not hold the lock"
  elif _alive(old.pid):
    why = "it does not hold the lock (the pid was reused)"
  else:
    why = "it is no longer running"
  return (f"workdir {path}: taking over the lock left by "
          f"{old.describe()}: {why}.")


def _lock(path: Path) -> int:
  """Opens and flocks ``path/.lock``; returns its descriptor."""
  try:
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise ValueError(f"workdir={str(path)!r}: cannot create its lock file "
                     f"{LOCK_FILE}: {e.strerror or e}.") from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    other = _read_holder(fd)
    os.close(fd)
    if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
      raise ValueError(f"workdir={str(path)!r}: cannot lock {LOCK_FILE}: "
                       f"{e.strerror or e}.") from e
    who = other.describe() if other else "another process"
    raise WorkdirInUse(
        f"workdir {path} is in use by {who}; wait for it to finish, or stop "
        "it, or choose another --workdir.") from None
  old = _read_holder(fd)
  if old is not None:
    log.warning("%s", _stale_note(path, old))
  try:
    _write_holder(fd, _me())
  except OSError as e:
    os.close(fd)
    raise ValueError(f"workdir={str(path)!r}: cannot write its lock file "
                     f"{LOCK_FILE}: {e.strerror or e}.") from e
  return fd


def _unlock(fd: int) -> None:
  try:
    _write_holder(fd, None)  # A clean release leaves no holder behind.
  except OSError:
    pass  # The flock still goes with the descriptor.
  os.close(fd)


@contextlib.contextmanager
def claim(path: str | os.PathLike, *,
          writer: Optional[bool] = None) -> Iterator[Path]:
  """Holds ``path``'s lock for the duration of the block.

  Args:
    path: an existing directory (the run's workdir).
    writer: whether this process takes the lock; default
      :func:`metalearn.distributed.is_writer` (process 0).

  Yields:
    ``path`` as a :class:`~pathlib.Path`.

  Raises:
    WorkdirInUse: another process holds it (the message names it).
    ValueError: the lock file cannot be created or written.
  """
  path = Path(path)
  key = path.resolve()
  if writer is None:
    writer = distributed.is_writer()
  if not writer:
    yield path
    return
  if key in _held:
    _held[key] += 1
    try:
      yield path
    finally:
      _held[key] -= 1
    return
  fd = _lock(path)
  _held[key] = 1
  try:
    yield path
  finally:
    del _held[key]
    _unlock(fd)
