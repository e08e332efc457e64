"""The convolution without windows, as C++ custom calls: XLA's convolution
and im2col kernel gradient for every shape and batching the models use;
errors for what it does not take; ``auto`` picks it on a CPU.

Derivatives of every order through it are in tests/test_im2col.py
(``impl="direct"``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml
from metalearn.benchmark import throughput
from metalearn.models import im2col
from metalearn.models import native_conv
from metalearn.models import native_windows

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not native_windows.available(),
    reason="the native convolution is a CPU kernel built on first use")


def _xla_conv(x, kernel):
  images = x.reshape(-1, *x.shape[-3:])
  out = jax.lax.conv_general_dilated(
      images, kernel, (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST)
  return out.reshape(*x.shape[:-1], kernel.shape[-1])


def _xla_kernel_grad(x, g):
  images = x.reshape(-1, *x.shape[-3:])
  grad = jnp.einsum("bhwk,bhwd->kd", im2col.windows(images),
                    g.reshape(-1, *g.shape[-3:]),
                    precision=jax.lax.Precision.HIGHEST)
  return grad.reshape(3, 3, x.shape[-1], g.shape[-1])


def _normal(seed, shape, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(seed), shape, dtype)


# (x shape, output channels): one input channel, a width that is not a whole
# number of vectors, several register blocks of output channels with a
# remainder, images smaller than one block of positions, extra leading axes,
# many small images stacked in one buffer with a shorter last stack, and
# several stacks summed into one kernel gradient.
SHAPES = [((3, 28, 28, 1), 32), ((2, 14, 14, 32), 24), ((2, 6, 5, 3), 40),
          ((4, 3, 3, 64), 64), ((1, 1, 1, 2), 5), ((2, 2, 4, 4, 8), 160),
          ((37, 3, 3, 5), 16), ((40, 20, 20, 32), 32)]


@pytest.mark.parametrize("shape,features", SHAPES)
def test_conv_and_kernel_grad_equal_xla(shape, features):
  x = _normal(0, shape)
  kernel = _normal(1, (3, 3, shape[-1], features)) / 3
  g = _normal(2, (*shape[:-1], features))
  np.testing.assert_allclose(jax.jit(native_conv.conv)(x, kernel),
                             _xla_conv(x, kernel), rtol=1e-5, atol=1e-5)
  want = _xla_kernel_grad(x, g)
  np.testing.assert_allclose(jax.jit(native_conv.kernel_grad)(x, g), want,
                             rtol=1e-5, atol=1e-5 * np.max(np.abs(want)))


def _mirrored(kernel):
  return jnp.swapaxes(kernel[::-1, ::-1], 2, 3)


@pytest.mark.parametrize("shape,features", SHAPES)
def test_flipped_conv_equals_xla_with_the_flipped_kernel(shape, features):
  x = _normal(0, shape)
  kernel = _normal(1, (3, 3, features, shape[-1])) / 3  # [3, 3, D, C]
  flipped = jax.jit(lambda x, k: native_conv.conv(x, k, flipped=True))
  np.testing.assert_allclose(flipped(x, kernel),
                             _xla_conv(x, _mirrored(kernel)), rtol=1e-5,
                             atol=1e-5)
  if min(shape[-3:-1]) > 1:  # The check can fail: unmirrored differs.
    assert not np.allclose(flipped(x, kernel),
                           _xla_conv(x, jnp.swapaxes(kernel, 2, 3)),
                           atol=1e-3)


def test_float64_to_rounding():
  with jax.enable_x64(True):
    x = _normal(3, (2, 7, 6, 5), jnp.float64)
    kernel = _normal(4, (3, 3, 5, 17), jnp.float64)
    g = _normal(5, (2, 7, 6, 17), jnp.float64)
    np.testing.assert_allclose(native_conv.conv(x, kernel),
                               _xla_conv(x, kernel), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(native_conv.kernel_grad(x, g),
                               _xla_kernel_grad(x, g), rtol=1e-13,
                               atol=1e-12)
    np.testing.assert_allclose(native_conv.conv(g, kernel, flipped=True),
                               _xla_conv(g, _mirrored(kernel)), rtol=1e-13,
                               atol=1e-13)


def test_per_task_kernels_under_nested_vmap_match_a_loop():
  x = _normal(6, (3, 2, 4, 6, 5, 2))  # [outer, tasks, images, H, W, C]
  kernels = _normal(7, (3, 2, 3, 3, 2, 16))
  g = _normal(8, (3, 2, 4, 6, 5, 16))
  conv = jax.jit(jax.vmap(jax.vmap(native_conv.conv)))(x, kernels)
  transposed = jax.jit(jax.vmap(jax.vmap(
      lambda g, k: native_conv.conv(g, k, flipped=True))))(g, kernels)
  grad = jax.jit(jax.vmap(jax.vmap(native_conv.kernel_grad)))(x, g)
  for i in range(3):
    for t in range(2):
      np.testing.assert_allclose(conv[i, t], _xla_conv(x[i, t], kernels[i, t]),
                                 rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(grad[i, t], _xla_kernel_grad(x[i, t], g[i, t]),
                                 rtol=1e-5, atol=1e-4)
      np.testing.assert_allclose(
          transposed[i, t], _xla_conv(g[i, t], _mirrored(kernels[i, t])),
          rtol=1e-5, atol=1e-4)


def test_an_unbatched_operand_is_shared_under_vmap():
  x, kernels = _normal(9, (4, 5, 5, 3)), _normal(10, (2, 3, 3, 3, 8))
  shared_x = jax.vmap(native_conv.conv, (None, 0))(x, kernels)
  xs = _normal(11, (2, 4, 5, 5, 3))
  shared_kernel = jax.vmap(native_conv.conv, (0, None))(xs, kernels[0])
  for t in range(2):
    np.testing.assert_allclose(shared_x[t], _xla_conv(x, kernels[t]),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shared_kernel[t], _xla_conv(xs[t], kernels[0]),
                               rtol=1e-5, atol=1e-5)


def test_bad_input_is_refused():
  x = jnp.zeros((2, 5, 5, 3))
  with pytest.raises(ValueError, match="float32 or two float64"):
    native_conv.conv(x, jnp.zeros((3, 3, 3, 4), jnp.bfloat16))
  with pytest.raises(ValueError, match=r"kernel \[3, 3, 3, D\]"):
    native_conv.conv(x, jnp.zeros((3, 3, 2, 4)))
  with pytest.raises(ValueError, match=r"\(flipped\) needs kernel \[3, 3, D, 3\]"):
    native_conv.conv(x, jnp.zeros((3, 3, 3, 4)), flipped=True)
  with pytest.raises(ValueError, match="over x's pixels"):
    native_conv.kernel_grad(x, jnp.zeros((2, 5, 4, 4)))
  with pytest.raises(ValueError, match=r"x \[..., H, W, C\]"):
    native_conv.conv(jnp.zeros((5, 3)), jnp.zeros((3, 3, 3, 4)))


def test_other_dtypes_take_the_windows():
  x = _normal(12, (2, 6, 5, 3)).astype(jnp.bfloat16)
  kernel = _normal(13, (3, 3, 3, 4)).astype(jnp.bfloat16)
  loss = lambda impl: lambda x, k: jnp.sum(
      im2col.conv3x3(x, k, impl).astype(jnp.float32) ** 2)
  direct = jax.grad(loss("direct"), (0, 1))(x, kernel)
  windows = jax.grad(loss("windows"), (0, 1))(x, kernel)
  for a, b in zip(direct, windows):
    assert a.dtype == jnp.bfloat16
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="impl must be one of"):
    im2col.conv3x3(x, kernel, "fast")


def test_auto_picks_it_on_a_cpu():
  assert ml.models.resolve_conv_impl("auto") == "direct_native"
  model = ml.models.conv4(5, input_shape=(28, 28, 1), filters=8,
                          conv_impl="direct_native")
  reference = ml.models.conv4(5, input_shape=(28, 28, 1), filters=8,
                              conv_impl="xla")
  params = jax.jit(model.init)(jax.random.key(0))
  x = _normal(14, (6, 28, 28, 1))
  np.testing.assert_allclose(jax.jit(model.apply)(params, x),
                             jax.jit(reference.apply)(params, x), rtol=1e-4,
                             atol=1e-4)


def test_flops_are_counted_as_xla_counts_the_windows_matmul():
  x, kernel = _normal(15, (2, 5, 6, 6, 3)), _normal(16, (2, 3, 3, 3, 4))
  g = _normal(17, (2, 5, 6, 6, 4))
  count = lambda f: throughput.compiled_flops(
      jax.jit(jax.vmap(f)).lower(x, kernel if f is native_conv.conv or
                                 f is windows_conv else g).compile())
  windows_conv = lambda x, k: im2col.conv3x3(x, k, "windows")
  windows_grad = lambda x, g: im2col.kernel_grad(x, g, "windows")
  want = 2.0 * 2 * 5 * 6 * 6 * 27 * 4
  assert count(native_conv.conv) == count(windows_conv) == want
  assert count(native_conv.kernel_grad) == count(windows_grad) == want
  lowered = jax.jit(jax.vmap(native_conv.conv)).lower(x, kernel).as_text()
  assert native_conv.flops_in_text(lowered) == want
