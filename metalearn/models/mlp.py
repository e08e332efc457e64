"""A small MLP: fast tests, toy problems and sinusoid regression."""

from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from metalearn.models import registry
from metalearn.models.conv4 import Model
from metalearn.models.conv4 import flax_model
from metalearn.types import Array

# name -> elementwise nonlinearity of the hidden layers.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
}


class MLP(nn.Module):
  """Flattens [B, ...] inputs, hidden layers, linear head -> [B, n_out].

  Attributes:
    n_out: width of the output (logits for classification, the target's
      dimension for regression).
    hidden: widths of the hidden layers.
    activation: a key of :data:`ACTIVATIONS` (``"tanh"`` or ``"relu"``).
    features_only: stop before the head: [B, hidden[-1]] features.
  """
  n_out: int
  hidden: Sequence[int] = (32,)
  activation: str = "tanh"
  features_only: bool = False

  @nn.compact
  def __call__(self, x: Array, mask: Optional[Array] = None) -> Array:
    del mask  # Row by row: no batch statistics to keep padding out of.
    act = ACTIVATIONS[self.activation]
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = act(nn.Dense(width, name=f"dense{i}")(x))
    if self.features_only:
      return x
    return nn.Dense(self.n_out, name="head")(x)


def mlp(n_out: int, *, input_shape: tuple[int, ...],
        hidden: Sequence[int] = (32,), activation: str = "tanh") -> Model:
  """Builds the MLP as a :class:`Model` (float32 parameters).

  Args:
    n_out: output width, >= 1.
    input_shape: one example's shape (without the batch axis).
    hidden: hidden layer widths, each >= 1 (may be empty: a linear model).
    activation: ``"tanh"`` (the default) or ``"relu"`` (Finn et al.'s
      sinusoid regressor: ``hidden=(40, 40), activation="relu"``).

  Returns:
    The :class:`Model`; ``apply(params, x [B, *input_shape]) -> [B, n_out]``,
    with ``body`` and ``head`` for head-only adaptation (ANIL).

  Raises:
    ValueError: naming ``n_out``, ``hidden`` or ``activation`` when invalid.
  """
  if n_out < 1:
    raise ValueError(f"n_out must be >= 1, got {n_out}.")
  if any(w < 1 for w in hidden):
    raise ValueError(f"hidden widths must each be >= 1, got {tuple(hidden)}.")
  if activation not in ACTIVATIONS:
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; "
                     f"got {activation!r}.")
  module = MLP(n_out, tuple(hidden), activation)
  return flax_model(module, jnp.zeros((1, *input_shape), jnp.float32))


def _check(config) -> None:
  registry.positive_ints(config, "hidden")
  if config.activation not in ("relu", "tanh"):
    raise ValueError(f"config.activation={config.activation!r} is invalid: "
                     "must be one of relu, tanh")


registry.register(registry.ModelSpec(
    "mlp",
    build=lambda c, shape: mlp(shape.n_out, input_shape=shape.input_shape,
                               hidden=tuple(c.hidden),
                               activation=c.activation),
    fields=("hidden", "activation"),
    describe=lambda c: (f"an MLP {'-'.join(map(str, c.hidden))} "
                        f"({c.activation})"),
    check=_check))
