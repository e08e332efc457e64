"""One parameter copy per task: the same meta-loss and meta-gradient as the
shared parameters, for first- and second-order MAML; when it is on."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml
from metalearn import configs
from metalearn import config_checks
from metalearn import core
from metalearn import task_copies
from metalearn.benchmark import workloads


def test_tile_copies_and_sums_cotangents():
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.float32(2.0)}
  copies = task_copies.tile(params, 4)
  assert copies["w"].shape == (4, 2, 3) and copies["b"].shape == (4,)
  np.testing.assert_array_equal(copies["w"][3], params["w"])
  weights = jnp.arange(1.0, 5.0)
  loss = lambda p: jnp.sum(weights[:, None, None] * p["w"] ** 2) + jnp.sum(
      weights * p["b"])
  grad = jax.grad(lambda p: loss(task_copies.tile(p, 4)))(params)
  np.testing.assert_allclose(grad["w"], 2 * 10.0 * params["w"])
  np.testing.assert_allclose(grad["b"], 10.0)


def _problem(conv_impl):
  model = ml.models.conv4(3, input_shape=(8, 8, 1), filters=4, num_blocks=2,
                          conv_impl=conv_impl)
  params = jax.jit(model.init)(jax.random.key(0))
  params = jax.tree.map(
      lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape,
                                            p.dtype), params)
  lrs = ml.fixed_inner_lrs(params, 0.3, 2)
  labels = jnp.tile(jnp.arange(3), (3, 2))
  xs = jax.random.normal(jax.random.key(2), (3, 6, 8, 8, 1))
  return model, params, lrs, ml.Task(xs, labels, xs[:, ::-1] + 0.5, labels)


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_is_the_shared_parameters_one(first_order):
  conv_impl = ml.models.resolve_conv_impl("auto")
  with jax.enable_x64(True):
    model, params, lrs, tasks = _problem(conv_impl)
    params, lrs, tasks = jax.tree.map(
        lambda a: a.astype(jnp.float64)
        if jnp.issubdtype(a.dtype, jnp.floating) else a, (params, lrs, tasks))

    def value_and_grad(tile):
      return jax.jit(jax.value_and_grad(lambda p: core.meta_loss(
          model.apply, p, lrs, tasks, None, first_order=first_order,
          unroll=True, tile_params=tile)[0]))(params)
    (loss, grad), (tiled_loss, tiled_grad) = value_and_grad(False), (
        value_and_grad(True))
    np.testing.assert_allclose(tiled_loss, loss, rtol=1e-12)
    chex.assert_trees_all_close(tiled_grad, grad, rtol=1e-10, atol=1e-12)
    # The check can fail: one task's gradient alone differs.
    one = jax.jit(jax.grad(lambda p: core.meta_loss(
        model.apply, p, lrs, jax.tree.map(lambda a: a[:1], tasks), None,
        first_order=first_order, unroll=True)[0]))(params)
    assert max(jax.tree.leaves(jax.tree.map(
        lambda a, b: float(jnp.max(jnp.abs(a - b))), one, grad))) > 1e-6


def test_resolve_and_bad_names():
  on_cpu = jax.default_backend() == "cpu"
  assert task_copies.resolve("auto", "direct_native") is on_cpu
  assert task_copies.resolve("auto", "xla") is False
  assert task_copies.resolve("on", "xla") and not task_copies.resolve(
      "off", "direct_native")
  with pytest.raises(ValueError, match="tile_params must be one of auto"):
    task_copies.resolve("yes", "xla")
  config = configs.base()
  config.tile_params = "yes"
  with pytest.raises(ValueError, match="tile_params"):
    config_checks.validate_config(config)
  assert workloads.parse_mode("tuned+tile").tile == "on"
  assert workloads.parse_mode("tuned+notile").tile == "off"
  assert workloads.parse_mode("tuned").tile == "auto"
