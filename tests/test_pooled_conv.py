"""The first layer's convolution and the pool's corner choice as one C++
call (metalearn.models.pooled_conv): the composition it replaces, its
derivatives to the order MAML takes them, and Conv-4 using it."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml
from metalearn.models import im2col
from metalearn.models import native_conv
from metalearn.models import native_windows
from metalearn.models import pooled_conv
from metalearn.models.norm_pool import _take_corner
from metalearn.models.norm_pool import max_pool_2x2

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not native_windows.available(),
    reason="the native convolution is a CPU kernel built on first use")


def _inputs(dtype, channels=1, features=6):
  x = jax.random.normal(jax.random.key(0), (2, 3, 6, 8, channels), dtype)
  kernel = jax.random.normal(jax.random.key(1), (2, 3, 3, channels, features),
                             dtype) / 3
  sign = jnp.where(jax.random.normal(jax.random.key(2), (2, features)) > 0,
                   1.0, -1.0).astype(dtype)
  return x, kernel, sign


def _reference(x, kernel, corner):
  return _take_corner(im2col.conv3x3(x, kernel, "xla"), corner)


@pytest.mark.parametrize("channels,features", [(1, 6), (3, 20), (2, 40)])
def test_conv_pool_is_the_convolution_then_the_pool(channels, features):
  x, kernel, sign = _inputs(jnp.float32, channels, features)
  pooled, corner = jax.jit(jax.vmap(pooled_conv.conv_pool))(x, kernel, sign)
  y = jax.vmap(native_conv.conv)(x, kernel)
  want = jax.vmap(lambda y, s: max_pool_2x2(y, by=s.reshape(1, 1, 1, -1) * y))(
      y, sign)
  np.testing.assert_array_equal(pooled, want)
  chex.assert_type(corner, jnp.int8)
  np.testing.assert_array_equal(
      jax.vmap(_take_corner)(y, corner), want)
  # Where the sign is negative the window's minimum is picked.
  assert np.any(np.asarray(pooled) < np.asarray(
      jax.vmap(lambda y: max_pool_2x2(y))(y)))


def test_derivatives_to_third_order_in_float64():
  with jax.enable_x64(True):
    x, kernel, sign = _inputs(jnp.float64)
    _, corner = jax.vmap(pooled_conv.conv_pool)(x, kernel, sign)

    def objective(take):
      def inner(kernel, x):
        return jnp.sum(jnp.tanh(jax.vmap(take)(x, kernel, corner)) ** 2)

      def outer(kernel, x):
        adapted = kernel - 0.1 * jax.grad(inner)(kernel, x)
        return inner(adapted, 1.5 * x)
      return outer
    ours, theirs = objective(pooled_conv.conv_take), objective(_reference)
    for argnum in (0, 1):  # Second order, in the kernel and the input.
      np.testing.assert_allclose(jax.jit(jax.grad(ours, argnum))(kernel, x),
                                 jax.jit(jax.grad(theirs, argnum))(kernel, x),
                                 rtol=1e-10, atol=1e-12)
    third = lambda f: jax.jit(jax.grad(
        lambda k: jnp.sum(jax.grad(f)(k, x) ** 2)))(kernel)
    np.testing.assert_allclose(third(ours), third(theirs), rtol=1e-9,
                               atol=1e-12)
    # The check can fail: other corners give another gradient.
    other = (corner + 1) % 4
    loss = lambda k, x, c: jnp.sum(jnp.tanh(jax.vmap(_reference)(x, k, c)) ** 2)
    grad = jax.jit(jax.grad(loss))
    assert not np.allclose(grad(kernel, x, other.astype(jnp.int8)),
                           grad(kernel, x, corner))


def test_conv4_meta_gradient_with_the_fused_first_layer():
  # Conv-4 with the C++ convolutions fuses its first layer with the pool:
  # the same function and second-order meta-gradient as XLA's convolution.
  with jax.enable_x64(True):
    models = [ml.models.conv4(3, input_shape=(8, 8, 1), filters=4,
                              num_blocks=2, conv_impl=impl)
              for impl in ("direct_native", "xla")]
    params = jax.tree.map(lambda p: p.astype(jnp.float64) + jax.random.normal(
        jax.random.key(1), p.shape, jnp.float64),
                          jax.jit(models[1].init)(jax.random.key(0)))
    assert float(jnp.min(params["norm0"]["scale"])) < 0
    lrs = ml.fixed_inner_lrs(params, 0.3, 2)
    labels = jnp.tile(jnp.arange(3), (2, 2))
    xs = jax.random.normal(jax.random.key(3), (2, 6, 8, 8, 1), jnp.float64)
    tasks = ml.Task(xs, labels, xs[:, ::-1], labels)
    loss = lambda apply: lambda p: ml.meta_loss(apply, p, lrs, tasks, None,
                                                unroll=True)[0]
    lowered = jax.jit(jax.grad(loss(models[0].apply))).lower(params)
    assert native_windows.CONV_POOL_TARGET in lowered.as_text()
    chex.assert_trees_all_close(lowered.compile()(params),
                                jax.jit(jax.grad(loss(models[1].apply)))(params),
                                rtol=1e-9, atol=1e-12)


def test_flops_are_those_of_the_whole_convolution():
  x, kernel, sign = _inputs(jnp.float32, 2, 5)
  pooled, corner = jax.vmap(native_conv.conv_pool)(x, kernel, sign)
  want = 2.0 * 2 * 3 * 6 * 8 * 9 * 2 * 5
  calls = [(native_conv.conv_pool, (x, kernel, sign)),
           (native_conv.conv_take, (x, kernel, corner)),
           (native_conv.kernel_grad_put, (x, pooled, corner))]
  for f, args in calls:
    program = jax.jit(jax.vmap(f)).lower(*args)
    assert native_conv.flops_in_text(program.as_text()) == want
    assert native_conv.flops_in_text(program.compile().as_text()) == want


def test_bad_input_is_refused():
  x = jnp.zeros((2, 5, 6, 1))
  with pytest.raises(ValueError, match="even height and width"):
    native_conv.conv_pool(x, jnp.zeros((3, 3, 1, 4)), jnp.ones(4))
  x = jnp.zeros((2, 4, 6, 1))
  with pytest.raises(ValueError, match=r"sign \[4\]"):
    native_conv.conv_pool(x, jnp.zeros((3, 3, 1, 4)), jnp.ones(3))
  with pytest.raises(ValueError, match="int8 corners"):
    native_conv.conv_take(x, jnp.zeros((3, 3, 1, 4)),
                          jnp.zeros((2, 2, 3, 4), jnp.int32))
  with pytest.raises(ValueError, match="even H and W"):
    native_conv.kernel_grad_put(x, jnp.zeros((2, 2, 2, 4)),
                                jnp.zeros((2, 2, 2, 4), jnp.int8))
  assert not pooled_conv.supports(jnp.zeros((2, 5, 6, 1)),
                                  jnp.zeros((3, 3, 1, 4)))
