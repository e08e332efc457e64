"""The two items of a checkpoint step, ``state`` and ``checksums``: the
arguments that save them, reading them back verified, and setting unusable
steps aside (see :mod:`metalearn.checkpoints` for what is guaranteed)."""

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from metalearn import orbax_noise
from metalearn.step import MetaState

_STATE = "state"
_SUMS = "checksums"
_FORMAT = 1
# JSON files of the ``state`` item that orbax parses before reading arrays.
_STATE_JSON = ("_METADATA", "array_metadatas/*")

log = logging.getLogger("metalearn.checkpoints")


class Unusable(ValueError):
  """A step failed verification; the message names the file or leaf."""


def _abstract(state: MetaState):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def _leaf_name(path) -> str:
  return jax.tree_util.keystr(path, simple=True, separator=".")


def _leaf_record(leaf: Any) -> dict:
  array = np.ascontiguousarray(jax.device_get(leaf))
  return {"sha256": hashlib.sha256(array.tobytes()).hexdigest(),
          "dtype": str(array.dtype), "shape": list(array.shape)}


def checksums(state: MetaState) -> dict:
  """The checksum record of ``state``: sha256, dtype and shape per leaf.

  Args:
    state: any pytree of arrays; leaves are copied to the host.

  Returns:
    ``{"format": 1, "leaves": {"opt_state.0.mu.conv1.kernel": {...}, ...}}``,
    keyed by the same dotted names orbax uses for the array files.
  """
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  return {"format": _FORMAT,
          "leaves": {_leaf_name(p): _leaf_record(x) for p, x in leaves}}


def verify(state: MetaState, record: Any) -> None:
  """Raises ``ValueError`` naming the first leaf that does not match.

  Args:
    state: the restored pytree.
    record: what :func:`checksums` returned at save time (parsed JSON).
  """
  if not (isinstance(record, dict) and record.get("format") == _FORMAT
          and isinstance(record.get("leaves"), dict)):
    raise Unusable(f"{_SUMS}: not a checksum record")
  got = checksums(state)["leaves"]
  want = record["leaves"]
  for name in sorted(set(got) ^ set(want)):
    where = "checksum record" if name in got else "template"
    raise Unusable(f"{name}: leaf missing from the {where}")
  for name in sorted(got):
    if got[name] != want[name]:
      raise Unusable(f"{name}: checksum mismatch")


def _check_state_json(step_dir: Path) -> None:
  """Orbax's own JSON files of a step must parse (a torn one can pass the
  array reads unnoticed)."""
  for pattern in _STATE_JSON:
    for path in sorted((step_dir / _STATE).glob(pattern)):
      try:
        json.loads(path.read_bytes())
      except (OSError, ValueError) as e:
        raise Unusable(f"{path}: unreadable ({type(e).__name__})") from e


def restore_step(manager: ocp.CheckpointManager, step: int,
                  template: MetaState) -> MetaState:
  _check_state_json(Path(manager.directory) / str(step))
  with orbax_noise.quiet():
    try:
      record = manager.restore(step, args=ocp.args.Composite(**{
          _SUMS: ocp.args.JsonRestore()}))[_SUMS]
    except Exception as e:  # pylint: disable=broad-except
      raise Unusable(
          f"{_SUMS} record unreadable: {orbax_noise.reason(e)}") from e
    state = manager.restore(step, args=ocp.args.Composite(**{
        _STATE: ocp.args.StandardRestore(_abstract(template))}))[_STATE]
  verify(state, record)
  return state


def first_usable(manager, steps, template, kind):
  """(step, state, unusable steps before it); (None, None, all) if none."""
  # Before the first read, not after a failure: an aborted read's late
  # errors can arrive from another thread before the failure is handled.
  orbax_noise.drop_loop_noise_from_now_on()
  bad = []
  for i, step in enumerate(steps):
    try:
      return step, restore_step(manager, step, template), bad
    except Exception as e:  # pylint: disable=broad-except
      reason = str(e) if isinstance(e, Unusable) else orbax_noise.reason(e)
      bad.append((step, reason))
      then = (f"trying step {steps[i + 1]}" if i + 1 < len(steps)
              else "no other step to try")
      log.warning("%s step %d in %s is unusable (%s); %s", kind, step,
                  manager.directory, reason, then)
  return None, None, bad


def set_aside(manager: ocp.CheckpointManager, steps, dest: Path) -> None:
  """Moves unusable step directories out of the manager's sight.

  Under several processes (which all found the same steps unusable) only
  process 0 moves them, between two barriers.
  """
  several = jax.process_count() > 1
  if several and steps:
    multihost_utils.sync_global_devices("metalearn_set_aside_start")
  for step, _ in (steps if jax.process_index() == 0 else ()):
    source = Path(manager.directory) / str(step)
    if not source.exists():
      continue
    dest.mkdir(parents=True, exist_ok=True)
    target, n = dest / str(step), 0
    while target.exists():
      n += 1
      target = dest / f"{step}.{n}"
    shutil.move(str(source), str(target))
  if several and steps:
    multihost_utils.sync_global_devices("metalearn_set_aside_end")
  manager.reload()


def save_args(state: MetaState) -> ocp.args.Composite:
  return ocp.args.Composite(**{_STATE: ocp.args.StandardSave(state),
                               _SUMS: ocp.args.JsonSave(checksums(state))})
