"""A user's model in one file: a linear classifier on the flattened image.

``--config.plugins=PATH/toy_model.py --config.model=toy_linear`` trains it.
"""

import math

import jax
import jax.numpy as jnp

import metalearn as ml


def build(config, shape: ml.models.Shape) -> ml.models.Model:
  del config  # reads no config field
  inputs = math.prod(shape.input_shape)

  def init(key):
    return {"head": {"kernel": 0.01 * jax.random.normal(
        key, (inputs, shape.n_out)), "bias": jnp.zeros((shape.n_out,))}}

  def apply(params, x):
    flat = x.reshape(x.shape[0], -1)
    return flat @ params["head"]["kernel"] + params["head"]["bias"]
  return ml.models.Model(init, apply)


ml.models.register(ml.models.ModelSpec(
    "toy_linear", build, fields=(),
    describe=lambda config: "a linear classifier"))
