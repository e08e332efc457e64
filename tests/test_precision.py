"""bfloat16 compute with float32 parameters, in the library and the API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import api
from metalearn import precision
from metalearn.models import mlp
from tests import helpers


def test_float32_is_the_identity():
  model = mlp(4, input_shape=(6,), hidden=(8,))
  assert precision.compute_in(model.apply, "float32") is model.apply


def test_bfloat16_casts_compute_but_keeps_a_float32_interface():
  model = mlp(4, input_shape=(6,), hidden=(8,))
  params = model.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (3, 6))
  apply16 = precision.compute_in(model.apply, "bfloat16")
  out, ref, grads = jax.jit(lambda p: (
      apply16(p, x), model.apply(p, x),
      jax.grad(lambda q: jnp.sum(apply16(q, x)))(p)))(params)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, ref, atol=5e-2)
  assert not np.array_equal(out, ref)  # really computed in bfloat16
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_bad_dtype_names_the_argument():
  with pytest.raises(ValueError, match="compute_dtype must be one of "
                     "float32, bfloat16; got 'float16'"):
    api.train_maml(helpers.tiny_model(), helpers.tiny_tasks(
        jax.random.key(1), num_tasks=8), compute_dtype="float16",
                   meta_steps=2, progress=False)


def test_train_maml_in_bfloat16_learns_with_float32_state():
  pool = helpers.tiny_tasks(jax.random.key(1), num_tasks=16)
  result = api.train_maml(helpers.tiny_model(), pool, inner_lr=0.5,
                          outer_lr=0.01, inner_steps=2, meta_steps=60,
                          meta_batch_size=4, compute_dtype="bfloat16",
                          progress=False)
  last = result.losses
  assert last[-10:].mean() < last[:10].mean() - 0.05
  leaves = jax.tree.leaves((result.params, result.state.opt_state))
  assert all(l.dtype == jnp.float32 for l in leaves
             if jnp.issubdtype(l.dtype, jnp.floating))
  assert result.apply_fn(result.params, pool.query_x[0]).dtype == jnp.float32
