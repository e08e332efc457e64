"""Conv-4 and MLP: shapes, transductive batch norm, per-step affine."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml


def test_conv4_shapes_and_transductive_norm():
  model = ml.models.conv4(5, input_shape=(8, 8, 1), filters=4, num_blocks=2)
  params = model.init(jax.random.key(0))
  chex.assert_shape(params["conv0"]["kernel"], (3, 3, 1, 4))
  chex.assert_shape(params["head"]["kernel"], (2 * 2 * 4, 5))
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))
  logits = model.apply(params, x)
  chex.assert_shape(logits, (6, 5))
  # The output depends on the batch: statistics come from the current pass.
  alone = model.apply(params, x[:3])
  assert not np.allclose(alone, logits[:3], atol=1e-4)
  # Normalisation alone: zero mean, unit variance per channel.
  norm = ml.models.conv4.__globals__["TransductiveBatchNorm"]()
  y = norm.apply(norm.init(jax.random.key(2), x * 3 + 1), x * 3 + 1)
  np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(y, axis=(0, 1, 2)), 1, atol=1e-3)


def test_per_step_bn_picks_the_step_row():
  model = ml.models.conv4(3, input_shape=(8, 8, 1), filters=4, num_blocks=2,
                          per_step_bn=3)
  assert model.step_aware
  params = model.init(jax.random.key(0))
  chex.assert_shape(params["norm1"]["scale"], (3, 4))
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  params["norm1"]["scale"] = params["norm1"]["scale"].at[2].set(5.0)
  same = model.apply(params, x, 0), model.apply(params, x, 1)
  np.testing.assert_allclose(*same, rtol=1e-6)
  assert not np.allclose(model.apply(params, x, 2), same[0])


def test_bad_model_arguments():
  with pytest.raises(ValueError, match="n_way"):
    ml.models.conv4(1)
  with pytest.raises(ValueError, match="filters"):
    ml.models.conv4(5, filters=0)


def test_matmul_convolution_is_the_same_model():
  xla = ml.models.conv4(5, input_shape=(12, 12, 1), filters=6, num_blocks=2,
                        conv_impl="xla")
  mm = ml.models.conv4(5, input_shape=(12, 12, 1), filters=6, num_blocks=2,
                       conv_impl="matmul")
  params = xla.init(jax.random.key(0))
  chex.assert_trees_all_equal(params, mm.init(jax.random.key(0)))
  # Non-zero biases, so their placement is checked too.
  params = jax.tree.map(
      lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape),
      params)
  x = jax.random.normal(jax.random.key(1), (7, 12, 12, 1))
  np.testing.assert_allclose(mm.apply(params, x), xla.apply(params, x),
                             rtol=1e-4, atol=1e-5)
  # Second-order meta-gradients under vmap (per-task kernels) agree too.
  lrs = ml.fixed_inner_lrs(params, 0.3, 2)
  labels = jnp.tile(jnp.arange(5), (3, 2))
  xs = jax.random.normal(jax.random.key(3), (3, 10, 12, 12, 1))
  tasks = ml.Task(xs, labels, xs[:, ::-1], labels)
  grad = lambda m: jax.grad(lambda p: ml.meta_loss(
      m.apply, p, lrs, tasks, None, unroll=True)[0])(params)
  chex.assert_trees_all_close(grad(mm), grad(xla), rtol=2e-3, atol=2e-5)


def test_conv_impl_auto_and_bad_name():
  assert ml.models.resolve_conv_impl("auto") == (
      "matmul" if jax.default_backend() == "cpu" else "xla")
  with pytest.raises(ValueError, match="conv_impl.*auto, xla, matmul"):
    ml.models.conv4(5, conv_impl="cudnn")
