"""Per-step loss weights: plain MAML's last step and MAML++'s annealed MSL."""

import jax.numpy as jnp

from metalearn.types import Array


def last_step_weights(num_steps: int) -> Array:
  """One-hot on the last inner step: plain MAML / FOMAML. -> [num_steps]."""
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
  return jnp.zeros((num_steps,), jnp.float32).at[-1].set(1.0)


def msl_weights(num_steps: int, epoch: Array | float,
                msl_epochs: int) -> Array:
  """MAML++'s multi-step loss weights (Antoniou et al. 2019, Sec. 4).

  Every weight starts at 1/N. Over ``msl_epochs`` epochs the non-final weights
  decay linearly to 0.03/N and the final weight takes the rest; from epoch
  ``msl_epochs`` on only the final step counts (as in the authors' code).
  ``epoch`` may be a traced (fractional) value, so this runs inside ``jit``.

  Args:
    num_steps: N, the number of inner steps; >= 1.
    epoch: the current epoch (0-based, may be fractional).
    msl_epochs: epochs over which the weights are annealed; >= 1.

  Returns:
    [num_steps] float32 weights summing to 1.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
  if msl_epochs < 1:
    raise ValueError(f"msl_epochs must be >= 1, got {msl_epochs}.")
  if num_steps == 1:
    return jnp.ones((1,), jnp.float32)
  epoch = jnp.asarray(epoch, jnp.float32)
  n = num_steps
  decay = 1.0 / n / msl_epochs
  floor = 0.03 / n
  early = jnp.maximum(1.0 / n - epoch * decay, floor)
  final = jnp.minimum(1.0 / n + epoch * (n - 1) * decay, 1.0 - (n - 1) * floor)
  annealed = jnp.concatenate([jnp.full((n - 1,), early), final[None]])
  return jnp.where(epoch < msl_epochs, annealed, last_step_weights(n))
