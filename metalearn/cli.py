"""What every experiment binary does around its main: a compilation cache
that survives the process, one-line errors, clean stops.

* The persistent compilation cache (JAX's own) lives in
  ``$METALEARN_JAX_CACHE_DIR`` (default ``~/.cache/metalearn/jax``), so a
  second run of the same command loads its programs instead of compiling
  them; ``--nocompilation_cache`` turns it off.
* A ValueError (a bad flag or config field, named in its message) prints as
  one line and exits 2; ``--verbosity=1`` shows the traceback.
* A non-finite loss, a workdir with no usable checkpoint, or a checkpoint
  that cannot be written (no space, no permission) prints its one line and
  exits 1; so does any other failed file operation (``OSError``: the cause
  and the file). A workdir in use by another process, or resumed with other
  training fields, is a ValueError (:mod:`metalearn.workdir`,
  :mod:`metalearn.fingerprint`).
* Several processes: ``--coordinator_address``, ``--num_processes`` and
  ``--process_id`` (or SLURM / Open MPI, detected by JAX) start
  ``jax.distributed`` before anything else (:mod:`metalearn.distributed`,
  docs/scaling.md); with one process nothing happens.
* SIGINT/SIGTERM during training save a checkpoint first
  (:class:`metalearn.trainer.Interrupted`); the binary prints where it
  stopped and exits 128 + the signal number, as a shell does.
"""

import os
from pathlib import Path
import sys
from typing import Callable

from absl import flags
from absl import logging

from metalearn import checkpoints
from metalearn import compilation_cache
from metalearn import distributed
from metalearn import orbax_noise
from metalearn import trainer

_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None,
    "Several processes: host:port of process 0 (else $JAX_COORDINATOR_ADDRESS"
    " or JAX's detection of SLURM / Open MPI). See docs/scaling.md.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Several processes: how many, >= 1.", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Several processes: this one's index, in "
    "[0, num_processes).", lower_bound=0)
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True,
    "Keep compiled programs in $METALEARN_JAX_CACHE_DIR (default "
    "~/.cache/metalearn/jax) so that reruns skip compiling.")


def _fail(message: str, code: int, *, now: bool = False) -> None:
  print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr, flush=True)
  if now:  # A failed write can leave orbax threads that block the exit.
    sys.stdout.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def run_main(main: Callable[[], None]) -> None:
  """Calls ``main()`` with the set-up and error handling described above."""
  if not flags.FLAGS["verbosity"].present:
    # Orbax logs every checkpoint at INFO; --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
  verbose = flags.FLAGS.verbosity >= 1
  if _COMPILATION_CACHE.value:
    compilation_cache.enable()
  try:
    distributed.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value)
    main()
  except ValueError as e:
    if verbose:
      raise
    _fail(f"error: {e}", 2)
  except (FloatingPointError, checkpoints.CheckpointError) as e:
    if verbose:
      raise
    # Checkpoint failures leave orbax reads or writes behind whose threads
    # could print or block after this line: exit at once.
    _fail(str(e), 1, now=isinstance(e, checkpoints.CheckpointError))
  except trainer.Interrupted as e:
    _fail(str(e), 128 + e.signum)
  except OSError as e:
    if verbose:
      raise
    _fail(os_error_line(e), 1, now=True)


def os_error_line(e: OSError) -> str:
  """``No space left on device: /runs/a/metrics.jsonl`` (one line)."""
  cause = e.strerror or orbax_noise.write_failure(e) or type(e).__name__
  where = e.filename or ""
  if e.filename2:
    where = f"{where} -> {e.filename2}"
  text = f"{cause[0].upper() + cause[1:]}: {where}" if where else cause
  return " ".join(text.split())
