"""Orbax checkpoints of the meta-training state: the latest and the best.

``workdir/checkpoints`` holds the latest states (resume), ``workdir/best`` the
state with the highest validation accuracy (evaluation). A state is written
only after its loss was checked finite, so a run that dies on a NaN leaves
the last good checkpoint intact.
"""

from pathlib import Path
from typing import Optional

import jax
import orbax.checkpoint as ocp

from metalearn.step import MetaState


def _abstract(state: MetaState):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


class Checkpointer:
  """Saves and restores :class:`MetaState` under a workdir."""

  def __init__(self, workdir: str | Path, *, keep: int = 2):
    workdir = Path(workdir).absolute()
    self._latest = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self._best = ocp.CheckpointManager(
        workdir / "best",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m["val_accuracy"],
            best_mode="max"))

  def restore_latest(self, template: MetaState) -> MetaState:
    """The latest saved state, or ``template`` when there is none."""
    step = self._latest.latest_step()
    if step is None:
      return template
    return self._latest.restore(
        step, args=ocp.args.StandardRestore(_abstract(template)))

  def restore_best(self, template: MetaState) -> Optional[MetaState]:
    """The best state by validation accuracy, or None."""
    step = self._best.best_step()
    if step is None:
      return None
    return self._best.restore(
        step, args=ocp.args.StandardRestore(_abstract(template)))

  def save_latest(self, step: int, state: MetaState) -> None:
    if self._latest.latest_step() != step:
      self._latest.save(step, args=ocp.args.StandardSave(state))

  def save_best(self, step: int, state: MetaState, val_accuracy: float) -> None:
    if step not in self._best.all_steps():
      self._best.save(step, args=ocp.args.StandardSave(state),
                      metrics={"val_accuracy": float(val_accuracy)})

  def wait(self) -> None:
    self._latest.wait_until_finished()
    self._best.wait_until_finished()
