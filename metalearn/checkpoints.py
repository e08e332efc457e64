"""Orbax checkpoints of the meta-training state that verify themselves.

``workdir/checkpoints`` holds the latest states (resume), ``workdir/best`` the
``best_k`` states with the highest validation accuracy (evaluation; more
than one for a test-time ensemble, :mod:`metalearn.ensemble`: orbax removes
the lower-scoring ones beyond ``best_k`` at each save). Each step directory
holds two orbax items: ``state`` (the :class:`MetaState`) and ``checksums``
(JSON: the sha256, dtype and shape of every array leaf, computed on the host
at save time). Orbax writes both into one temporary directory and publishes
the step with a single rename, so a step that exists on disk never has a
record that belongs to another save, even after ``kill -9`` mid-save.

What is guaranteed:

* A restore returns only a state whose every leaf matches its recorded
  checksum, with the template's tree structure. A step that cannot be read,
  has no or an unreadable checksum record, or mismatches it is *unusable*.
* For each unusable step, exactly one warning line (logger
  ``metalearn.checkpoints``) names the step and the file or leaf at fault,
  and the next older step is tried. Orbax's own log output and asyncio
  "Event loop is closed" tracebacks are silenced while a step fails.
* :meth:`Checkpointer.restore_latest` raises :class:`CheckpointError`,
  listing every step tried and why, when steps exist but none is usable; it
  moves nothing in that case.
* When an older step is restored, the unusable newer steps are moved to
  ``workdir/unusable/<checkpoints|best>/<step>[.N]`` so that training can
  save those step numbers again (orbax skips saves of steps not newer than
  the newest on disk).
* :meth:`Checkpointer.restore_best` returns ``None`` (and moves the damaged
  steps aside) when no best checkpoint is usable; callers then evaluate the
  final state instead. :meth:`Checkpointer.restore_best_k` returns the
  usable ones of the kept best steps, highest score first; a damaged one is
  logged, moved aside and left out.

A state is written only after its loss was checked finite, so a run that dies
on a NaN leaves the last good checkpoint intact.

A save that cannot be written (no space left, permission denied, a
read-only file system) raises :class:`CheckpointWriteError` with one line:
the cause, the step and directory, and the last good step to resume from.
Orbax's own tracebacks of the failed save are dropped, and its half-written
temporary directory is removed, so the rerun after the cause is fixed
resumes from the last good step.

Under several processes (:mod:`metalearn.distributed`) every process calls
the same saves and restores of the same replicated state: orbax coordinates
them (process 0 writes the replicated arrays and the JSON record), so the
workdir must be on a file system every process sees, and every process
resumes from it.
"""

import logging
import shutil
from pathlib import Path
from typing import Optional

import jax
import orbax.checkpoint as ocp

from metalearn import checkpoint_records as records
from metalearn import orbax_noise
from metalearn.step import MetaState

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """Checkpoints exist but none could be read back and verified."""


class CheckpointWriteError(CheckpointError):
  """A checkpoint could not be written; the message says why and what to
  resume from."""


_TMP = "*.orbax-checkpoint-tmp*"
_FIX = {"no space left on device": "free space",
        "permission denied": "make it writable",
        "read-only file system": "make it writable",
        "a directory vanished": "check the disk"}


def _remove_partial(manager: ocp.CheckpointManager) -> None:
  """Removes orbax's temporary (never published) step directories."""
  if jax.process_index() != 0:
    return
  for tmp in Path(manager.directory).glob(_TMP):
    shutil.rmtree(tmp, ignore_errors=True)


def _managers(workdir: Path, keep: int, best_k: int):
  """Orbax managers of the latest steps and of the best steps."""
  latest = ocp.CheckpointManager(
      workdir / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
  best = ocp.CheckpointManager(
      workdir / "best",
      options=ocp.CheckpointManagerOptions(
          max_to_keep=best_k, create=True,
          best_fn=lambda m: m["val_accuracy"],
          best_mode="max"))
  return latest, best


class Checkpointer:
  """Saves and restores :class:`MetaState` under a workdir, verified.

  Args:
    workdir: the run directory; ``checkpoints/``, ``best/`` and, after a
      damaged step was skipped, ``unusable/`` live under it.
    keep: how many latest steps to keep (older ones are the fallback).
    best_k: how many best steps to keep (by validation score; ties go to
      the newer step). A Checkpointer that only restores may keep the
      default: steps are removed only when one is saved.
  """

  def __init__(self, workdir: str | Path, *, keep: int = 2, best_k: int = 1):
    if isinstance(best_k, bool) or not isinstance(best_k, int) or best_k < 1:
      raise ValueError(f"best_k must be an integer >= 1, got {best_k!r}.")
    workdir = Path(workdir).absolute()
    self._unusable = workdir / "unusable"
    orbax_noise.drop_save_errors_from_now_on()
    orbax_noise.drop_loop_noise_from_now_on()
    try:
      self._latest, self._best = _managers(workdir, keep, best_k)
    except OSError as e:
      raise CheckpointWriteError(
          f"{orbax_noise.write_failure(e) or e.strerror or e} while creating "
          f"the checkpoint directories in {workdir}.") from e
    self._pending = {}  # id(manager) -> the step being saved.
    self._failed = False

  def latest_step(self) -> Optional[int]:
    """The newest step in ``checkpoints/``, verified or not; None if none."""
    return self._latest.latest_step()

  def restore_latest(self, template: MetaState) -> MetaState:
    """The newest saved state that verifies, or ``template`` if none exist.

    Args:
      template: a state of the right structure, shapes and dtypes (e.g. the
        freshly initialised one); its values are not used.

    Returns:
      The restored state; unusable newer steps were logged and moved aside.

    Raises:
      CheckpointError: steps exist but none verifies (nothing is moved).
    """
    steps = sorted(self._latest.all_steps(), reverse=True)
    if not steps:
      return template
    with orbax_noise.quiet():
      step, state, bad = records.first_usable(self._latest, steps, template,
                                       "checkpoint")
    if step is None:
      tried = "; ".join(f"step {s}: {why}" for s, why in bad)
      raise CheckpointError(
          f"no usable checkpoint in {self._latest.directory} (tried {tried}). "
          "Nothing was restored; move that directory aside to start from "
          "step 0, or put back a good copy.")
    records.set_aside(self._latest, bad, self._unusable / "checkpoints")
    return state

  def restore_best(self, template: MetaState) -> Optional[MetaState]:
    """The best verified state by validation accuracy, or None.

    Steps are tried from the highest recorded accuracy down. Damaged ones
    are logged (one line each) and moved aside; ``None`` means no usable
    best checkpoint, so the caller should use its final state.
    """
    best = self.restore_best_k(template, 1)
    return best[0][1] if best else None

  def best_steps(self) -> list[int]:
    """The steps in ``best/``, verified or not, highest score first (ties:
    the newer step first)."""
    with orbax_noise.quiet():
      return sorted(self._best.all_steps(), reverse=True,
                    key=lambda s: (self._accuracy(s), s))

  def restore_best_k(self, template: MetaState,
                     k: int) -> list[tuple[int, MetaState]]:
    """Up to ``k`` verified best states, highest validation score first.

    As :meth:`restore_best`, steps are tried from the highest score down;
    each damaged one is logged (one line), moved aside and skipped, so
    fewer than ``k`` come back when fewer are kept or usable.

    Returns:
      ``[(step, state), ...]``, empty when no best checkpoint is usable.
    """
    steps = self.best_steps()
    if not steps:
      return []
    found, bad = [], []
    with orbax_noise.quiet():
      while steps and len(found) < k:
        step, state, skipped = records.first_usable(self._best, steps, template,
                                             "best checkpoint")
        bad += skipped
        if step is None:
          break
        found.append((step, state))
        steps = steps[steps.index(step) + 1:]
    records.set_aside(self._best, bad, self._unusable / "best")
    return found

  def _accuracy(self, step: int) -> float:
    try:
      return float(self._best.metrics(step)["val_accuracy"])
    except Exception:  # pylint: disable=broad-except
      return float("-inf")

  def save_latest(self, step: int, state: MetaState) -> None:
    """Saves ``state`` as ``step`` (async); no-op if that step exists.

    Orbax also skips a step not newer than the newest one on disk.

    Raises:
      CheckpointWriteError: this save, or the previous one still in flight,
        could not be written.
    """
    if step not in self._latest.all_steps():
      self._save(self._latest, step, args=records.save_args(state))

  def save_best(self, step: int, state: MetaState, val_accuracy: float) -> None:
    """Saves ``state`` as a best candidate; orbax keeps the ``best_k`` best
    (a candidate below them is removed again)."""
    if step not in self._best.all_steps():
      self._save(self._best, step, args=records.save_args(state),
                 metrics={"val_accuracy": float(val_accuracy)})

  def wait(self) -> None:
    """Blocks until pending saves are committed to disk.

    Raises:
      CheckpointWriteError: a pending save could not be written (raised
        once: after a failure, later waits only wait).
    """
    self._finish(self._latest)
    self._finish(self._best)

  def _save(self, manager: ocp.CheckpointManager, step: int, **kwargs):
    self._finish(manager)  # A failure of the previous save is its own.
    try:
      manager.save(step, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      self._write_failed(manager, step, e)
    self._pending[id(manager)] = step

  def _finish(self, manager: ocp.CheckpointManager) -> None:
    step = self._pending.pop(id(manager), None)
    try:
      manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      if not self._failed:
        self._write_failed(manager, step, e)

  def _write_failed(self, manager, step: Optional[int], exc: Exception):
    """Cleans up after a failed save and raises its one-line error."""
    self._failed = True
    with orbax_noise.quiet():
      _remove_partial(manager)
      manager.reload()
      self._latest.reload()
    cause = orbax_noise.write_failure(exc)
    good = self._latest.latest_step()
    last = (f"the last good checkpoint is step {good} in "
            f"{self._latest.directory}" if good is not None
            else "no checkpoint was saved before")
    fix = _FIX.get(cause, "fix the cause")
    what = "checkpoint" if step is None else f"checkpoint step {step}"
    raise CheckpointWriteError(
        f"{cause or orbax_noise.reason(exc)} while writing {what} in "
        f"{manager.directory}; {last}. {fix[0].upper() + fix[1:]} and rerun "
        "to resume.") from exc
