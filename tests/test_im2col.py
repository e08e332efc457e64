"""The im2col convolution with hand-written VJPs: XLA's convolution, and the
derivatives JAX takes of the plain im2col matmul, to every order used; with
the windows in XLA, the windows as a C++ custom call, and the convolution
as C++ loops without windows (``impl``)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml
from metalearn import imaml
from metalearn.models import im2col


def _xla_conv(x, kernel):
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _meta_objective(conv):
  """kernel, x -> a two-layer loss after one inner step on ``kernel``: the
  inner gradient is differentiated again, as MAML's meta-gradient does."""
  def inner(kernel, x):
    hidden = jnp.tanh(conv(x, kernel))
    return jnp.sum(conv(hidden, jnp.swapaxes(kernel, 2, 3)) ** 2)

  def outer(kernel, x):
    adapted = kernel - 0.1 * jax.grad(inner)(kernel, x)
    return inner(adapted, 1.5 * x)
  return outer


def _inputs(dtype):
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 3), dtype)
  kernel = 0.3 * jax.random.normal(jax.random.key(1), (3, 3, 3, 4), dtype)
  return x, kernel


def _conv3x3(impl):
  return functools.partial(im2col.conv3x3, impl=impl)


NATIVE = pytest.mark.parametrize("impl", im2col.IMPLS)


@NATIVE
def test_forward_is_xla_convolution(impl):
  with jax.enable_x64(True):
    x, kernel = _inputs(jnp.float64)
    np.testing.assert_allclose(_conv3x3(impl)(x, kernel),
                               _xla_conv(x, kernel), rtol=1e-12, atol=1e-12)


@NATIVE
@pytest.mark.parametrize("argnum", [0, 1])
def test_second_order_gradient_is_xla_convolutions(argnum, impl):
  with jax.enable_x64(True):
    x, kernel = _inputs(jnp.float64)
    grad = lambda conv: jax.grad(_meta_objective(conv), argnum)(kernel, x)
    want = grad(_xla_conv)
    np.testing.assert_allclose(grad(_conv3x3(impl)), want, rtol=1e-10,
                               atol=1e-10)
    # The check can fail: a wrong transpose (kernel not flipped) differs.
    np.testing.assert_allclose(grad(im2col.im2col_conv), want, rtol=1e-10,
                               atol=1e-10)
    unflipped = _meta_objective(lambda x, k: _xla_conv(x, k[::-1]))
    assert np.max(np.abs(jax.grad(unflipped, argnum)(kernel, x) - want)) > 1e-3


@NATIVE
def test_transposed_convolution_and_its_derivatives(impl):
  # conv3x3(..., transposed=True) is its own function with its own VJP:
  # the convolution with the kernel mirrored and transposed, to second
  # order.
  with jax.enable_x64(True):
    x, kernel = _inputs(jnp.float64)
    mirror = lambda k: jnp.swapaxes(k[::-1, ::-1], 2, 3)
    transposed = lambda x, k: im2col.conv3x3(x, jnp.swapaxes(k, 2, 3), impl,
                                             transposed=True)
    reference = lambda x, k: _xla_conv(x, mirror(jnp.swapaxes(k, 2, 3)))
    np.testing.assert_allclose(transposed(x, kernel), reference(x, kernel),
                               rtol=1e-12, atol=1e-12)
    for argnum in (0, 1):
      grad = lambda conv: jax.grad(_meta_objective(conv), argnum)(kernel, x)
      np.testing.assert_allclose(grad(transposed), grad(reference),
                                 rtol=1e-10, atol=1e-10)


@NATIVE
def test_third_order_through_the_kernel_gradient(impl):
  # The gradient of a squared meta-gradient differentiates kernel_grad's
  # own VJP.
  with jax.enable_x64(True):
    x, kernel = _inputs(jnp.float64)

    def third(conv):
      meta_grad = jax.grad(_meta_objective(conv))
      return jax.grad(lambda k: jnp.sum(meta_grad(k, x) ** 2))(kernel)
    want = third(_xla_conv)
    np.testing.assert_allclose(third(_conv3x3(impl)), want, rtol=1e-9,
                               atol=1e-9 * np.max(np.abs(want)))


@NATIVE
def test_per_task_kernels_under_vmap_match_a_loop(impl):
  with jax.enable_x64(True):
    x, kernel = _inputs(jnp.float64)
    xs, kernels = jnp.stack([x, x + 1.0]), jnp.stack([kernel, -2.0 * kernel])
    grad = jax.grad(_meta_objective(_conv3x3(impl)))
    batched = jax.vmap(grad)(kernels, xs)
    for t in range(2):
      np.testing.assert_allclose(batched[t], grad(kernels[t], xs[t]),
                                 rtol=1e-12, atol=1e-12)


def test_forward_mode_is_refused():
  x, kernel = _inputs(jnp.float32)
  with pytest.raises(TypeError, match="custom_vjp"):
    jax.jvp(lambda k: im2col.conv3x3(x, k), (kernel,), (kernel,))


def test_imaml_direction_with_the_hand_written_vjp():
  # iMAML's Hessian-vector products are reverse mode, so they run through
  # conv3x3 and give the direction of JAX's own derivatives.
  models = [ml.models.conv4(3, input_shape=(8, 8, 1), filters=3,
                            num_blocks=2, conv_impl=c)
            for c in ("im2col", "im2col_vjp")]
  params = jax.jit(models[0].init)(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.1, 2)
  labels = jnp.tile(jnp.arange(3), (2, 2))
  xs = jax.random.normal(jax.random.key(3), (2, 6, 8, 8, 1))
  tasks = ml.Task(xs, labels, xs[:, ::-1], labels)
  direction = lambda m: jax.jit(lambda p: imaml.direction(
      m.apply, p, lrs, tasks, lam=2.0, cg_steps=3))(params)[0]
  chex.assert_trees_all_close(direction(models[1]), direction(models[0]),
                              rtol=1e-3, atol=1e-5)


def test_mixed_precision_cotangents_keep_their_primal_dtypes():
  x, kernel = _inputs(jnp.float32)
  kernel = kernel.astype(jnp.bfloat16)
  loss = lambda x, k: jnp.sum(im2col.conv3x3(x, k).astype(jnp.float32) ** 2)
  dx, dk = jax.grad(loss, (0, 1))(x, kernel)
  assert (dx.dtype, dk.dtype) == (jnp.float32, jnp.bfloat16)
