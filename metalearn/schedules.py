"""The one multi-step-loss schedule (MAML++) and plain MAML's last step.

An epoch is ``steps_per_epoch`` meta-steps, counted in whole epochs as in the
MAML++ authors' code: the weights change once per epoch.
"""

from typing import Callable, NamedTuple

import jax.numpy as jnp

from metalearn.types import Array


def last_step_weights(inner_steps: int) -> Array:
  """One-hot on the last inner step: plain MAML / FOMAML. -> [inner_steps]."""
  if inner_steps < 1:
    raise ValueError(f"inner_steps must be >= 1, got {inner_steps}.")
  return jnp.zeros((inner_steps,), jnp.float32).at[-1].set(1.0)


def msl_weights(inner_steps: int, epoch: Array | int,
                msl_epochs: int) -> Array:
  """MAML++'s multi-step loss weights (Antoniou et al. 2019, Sec. 4).

  Every weight starts at 1/N. Over ``msl_epochs`` epochs the non-final weights
  decay linearly to 0.03/N and the final weight takes the rest; from epoch
  ``msl_epochs`` on only the final step counts (as in the authors' code).
  ``epoch`` may be traced, so this runs inside ``jit``.

  Args:
    inner_steps: N, the number of inner steps; >= 1.
    epoch: the current (0-based) epoch.
    msl_epochs: epochs over which the weights are annealed; >= 1.

  Returns:
    [inner_steps] float32 weights summing to 1.
  """
  if inner_steps < 1:
    raise ValueError(f"inner_steps must be >= 1, got {inner_steps}.")
  if msl_epochs < 1:
    raise ValueError(f"msl_epochs must be >= 1, got {msl_epochs}.")
  if inner_steps == 1:
    return jnp.ones((1,), jnp.float32)
  epoch = jnp.asarray(epoch, jnp.float32)
  n = inner_steps
  decay = 1.0 / n / msl_epochs
  floor = 0.03 / n
  early = jnp.maximum(1.0 / n - epoch * decay, floor)
  final = jnp.minimum(1.0 / n + epoch * (n - 1) * decay, 1.0 - (n - 1) * floor)
  annealed = jnp.concatenate([jnp.full((n - 1,), early), final[None]])
  return jnp.where(epoch < msl_epochs, annealed, last_step_weights(n))


def msl_weights_fn(inner_steps: int, msl_epochs: int, steps_per_epoch: int
                  ) -> Callable[[Array], Array]:
  """``meta_step -> [inner_steps]`` MSL weights, whole epochs of
  ``steps_per_epoch`` meta-steps (traceable: the step may be traced)."""
  if steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}.")
  return lambda meta_step: msl_weights(inner_steps,
                                       meta_step // steps_per_epoch,
                                       msl_epochs)


def msl_end(meta_steps: int, msl_epochs: int, steps_per_epoch: int) -> int:
  """The meta-step from which the multi-step loss weighs only the last
  step (0 without a multi-step loss, at most ``meta_steps``)."""
  return min(meta_steps, msl_epochs * steps_per_epoch)


def first_order_end(meta_steps: int, first_order_epochs: int,
                    steps_per_epoch: int) -> int:
  """Derivative-order annealing: the meta-step from which a second-order
  algorithm stops running first order (0: never first order)."""
  return min(meta_steps, first_order_epochs * steps_per_epoch)


class Phase(NamedTuple):
  """What one stretch of meta-steps runs: one compiled program each.

  Attributes:
    first_order: the meta-gradient drops its second-order terms.
    multi_step_loss: the query loss after every inner step is weighed
      (MAML++'s multi-step loss); otherwise only the last step's counts and
      the query set runs once.
  """
  first_order: bool
  multi_step_loss: bool

  def describe(self, order: bool = True) -> str:
    """E.g. "first order, multi-step loss"; without ``order`` (an algorithm
    whose meta-gradient never flows through an inner loop) only the loss
    part, possibly empty."""
    parts = ([("first order" if self.first_order else "second order")]
             if order else [])
    parts += ["multi-step loss"] if self.multi_step_loss else []
    return ", ".join(parts)


class PhasePlan(NamedTuple):
  """When each phase runs, in meta-steps.

  Attributes:
    meta_steps: length of training.
    first_order: the algorithm is first order throughout.
    first_order_end: a second-order algorithm runs first order before this
      step (derivative-order annealing; 0: never).
    msl_end: the multi-step loss weighs the early steps before this step
      (0: no multi-step loss).
    shows_order: whether the derivative order means anything (a
      meta-gradient through an inner loop), so that progress names it.
  """
  meta_steps: int
  first_order: bool
  first_order_end: int
  msl_end: int
  shows_order: bool = True

  def describe(self, meta_step: int) -> str:
    """What runs at ``meta_step``, for a progress bar (see
    :meth:`Phase.describe`)."""
    return self.phase_at(meta_step).describe(self.shows_order)

  def phase_at(self, meta_step: int) -> Phase:
    return Phase(self.first_order or meta_step < self.first_order_end,
                 meta_step < self.msl_end)

  def switches(self) -> list[int]:
    """The meta-steps where the phase changes (0 < step < meta_steps)."""
    return sorted({s for s in (self.first_order_end, self.msl_end)
                   if 0 < s < self.meta_steps})


def phase_plan(*, meta_steps: int, steps_per_epoch: int, first_order: bool,
               multi_step_loss: bool, msl_epochs: int, inner_steps: int,
               first_order_epochs: int = 0,
               shows_order: bool = True) -> PhasePlan:
  """The phases of one run (see :class:`PhasePlan`).

  With one inner step the multi-step loss is the last step's loss, so it
  needs no phase (and no program) of its own.
  """
  return PhasePlan(
      meta_steps, first_order,
      0 if first_order else first_order_end(meta_steps, first_order_epochs,
                                            steps_per_epoch),
      msl_end(meta_steps, msl_epochs, steps_per_epoch)
      if multi_step_loss and inner_steps > 1 else 0, shows_order)
