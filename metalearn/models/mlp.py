"""A small MLP for fast tests and toy problems."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from metalearn.models.conv4 import Model
from metalearn.types import Array


class MLP(nn.Module):
  """Flattens [B, ...] inputs, tanh hidden layers, linear head -> [B, n_out]."""
  n_out: int
  hidden: Sequence[int] = (32,)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.tanh(nn.Dense(width, name=f"dense{i}")(x))
    return nn.Dense(self.n_out, name="head")(x)


def mlp(n_out: int, *, input_shape: tuple[int, ...],
        hidden: Sequence[int] = (32,)) -> Model:
  """Builds the MLP as a :class:`Model` (float32 parameters)."""
  if n_out < 1:
    raise ValueError(f"n_out must be >= 1, got {n_out}.")
  module = MLP(n_out, tuple(hidden))
  dummy = jnp.zeros((1, *input_shape), jnp.float32)

  def init(key):
    return module.init(key, dummy)["params"]

  def apply(params, x):
    return module.apply({"params": params}, x)

  return Model(init, apply)
