"""Conv-4 and MLP: shapes, transductive batch norm, per-step affine."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml
from metalearn.models.norm_pool import TransductiveBatchNorm
from metalearn.models.norm_pool import max_pool_2x2
from metalearn.models.norm_pool import conv_moments
from metalearn.models.norm_pool import shifted_moments
from metalearn.models.norm_pool import step_row


def test_conv4_shapes_and_transductive_norm():
  model = ml.models.conv4(5, input_shape=(8, 8, 1), filters=4, num_blocks=2)
  params = jax.jit(model.init)(jax.random.key(0))
  chex.assert_shape(params["conv0"]["kernel"], (3, 3, 1, 4))
  chex.assert_shape(params["head"]["kernel"], (2 * 2 * 4, 5))
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))
  # Both batches in one compiled call (eager flax ops compile one by one).
  logits, alone = jax.jit(lambda p, x: (model.apply(p, x),
                                        model.apply(p, x[:3])))(params, x)
  chex.assert_shape(logits, (6, 5))
  # The output depends on the batch: statistics come from the current pass.
  assert not np.allclose(alone, logits[:3], atol=1e-4)
  # Normalisation alone: zero mean, unit variance per channel.
  norm = TransductiveBatchNorm()
  y = jax.jit(lambda x: norm.apply(norm.init(jax.random.key(2), x), x))(
      x * 3 + 1)
  np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(y, axis=(0, 1, 2)), 1, atol=1e-3)


def test_convolutions_have_no_bias_before_batch_norm():
  # Batch norm subtracts the per-channel mean right after each convolution,
  # so a conv bias would have no effect: the offset is the only shift.
  model = ml.models.conv4(3, input_shape=(8, 8, 1), filters=4, num_blocks=2)
  params = jax.jit(model.init)(jax.random.key(0))
  assert sorted(params) == ["conv0", "conv1", "head", "norm0", "norm1"]
  for i in range(2):
    assert list(params[f"conv{i}"]) == ["kernel"]
    assert sorted(params[f"norm{i}"]) == ["offset", "scale"]
  assert sorted(params["head"]) == ["bias", "kernel"]
  norm = TransductiveBatchNorm()
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 4))
  shift = jnp.arange(4.0).reshape(1, 1, 1, 4)
  variables = norm.init(jax.random.key(2), x)
  np.testing.assert_allclose(norm.apply(variables, x + shift),
                             norm.apply(variables, x), atol=1e-5)


def _two_pass_moments(x, axes):
  mean = jnp.mean(x, axis=axes, keepdims=True)
  return mean, jnp.mean((x - mean) ** 2, axis=axes, keepdims=True)


def test_one_pass_moments_are_the_two_pass_ones_with_their_derivatives():
  axes = (0, 1, 2)
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(0), (3, 4, 5, 2), jnp.float64)
    x = x * jnp.asarray([[[[1.0, 0.1]]]]) + jnp.asarray([[[[3.0, -50.0]]]])
    for got, want in zip(shifted_moments(x, axes), _two_pass_moments(x, axes)):
      chex.assert_shape(got, (1, 1, 1, 2))
      np.testing.assert_allclose(got, want, rtol=1e-12)
    # To second order: the shift is held constant, which is exact.
    scalar = lambda moments: lambda x: jnp.sum(
        jnp.sin(moments(x, axes)[0]) * jnp.sqrt(moments(x, axes)[1]))
    hessian = lambda moments: jax.jit(jax.hessian(scalar(moments)))(x)
    np.testing.assert_allclose(hessian(shifted_moments),
                               hessian(_two_pass_moments), rtol=1e-9,
                               atol=1e-12)
  # float32 far from zero: as close as two passes; unshifted, it cancels.
  x = 1000.0 + jax.random.normal(jax.random.key(1), (5, 28, 28, 8))
  exact = np.var(np.asarray(x, np.float64), axis=axes)
  got = np.asarray(jax.jit(lambda x: shifted_moments(x, axes))(x)[1])
  np.testing.assert_allclose(got.ravel(), exact, rtol=1e-4)
  unshifted = jnp.mean(x * x, axis=axes) - jnp.mean(x, axis=axes) ** 2
  assert np.max(np.abs(np.asarray(unshifted) / exact - 1)) > 1e-2


@pytest.mark.parametrize("channels", [1, 3])
def test_conv_moments_are_the_output_moments_to_second_order(channels):
  axes = (0, 1, 2)
  conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  with jax.enable_x64(True):
    x = jax.random.uniform(jax.random.key(0), (3, 6, 5, channels),
                           jnp.float64)
    kernel = jax.random.normal(jax.random.key(1), (3, 3, channels, 4),
                               jnp.float64)
    for got, want in zip(conv_moments(x, kernel),
                         _two_pass_moments(conv(x, kernel), axes)):
      chex.assert_shape(got, (1, 1, 1, 4))
      np.testing.assert_allclose(got, want, rtol=1e-12)
    # MAML differentiates the statistics twice, in the kernel and the input.
    scalar = lambda moments: lambda k, x: jnp.sum(
        jnp.cos(moments[0](k, x)) * jnp.sqrt(moments[1](k, x)))
    ours = (lambda k, x: conv_moments(x, k)[0],
            lambda k, x: conv_moments(x, k)[1])
    theirs = (lambda k, x: _two_pass_moments(conv(x, k), axes)[0],
              lambda k, x: _two_pass_moments(conv(x, k), axes)[1])
    for argnum in (0, 1):
      np.testing.assert_allclose(
          jax.jit(jax.hessian(scalar(ours), argnum))(kernel, x),
          jax.jit(jax.hessian(scalar(theirs), argnum))(kernel, x), rtol=1e-9,
          atol=1e-12)
    # Ignoring the zero padding of the windows (a wrong shortcut) differs.
    valid = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert not np.allclose(_two_pass_moments(valid, axes)[0],
                           conv_moments(x, kernel)[0], atol=1e-3)


def test_conv4_takes_few_channel_statistics_from_the_input():
  # Conv-4's first block (1 input channel) uses conv_moments; its forward
  # equals batch norm on the convolution's output, in float32 too.
  model = ml.models.conv4(5, input_shape=(12, 12, 1), filters=8,
                          num_blocks=2, conv_impl="xla")
  params = jax.jit(model.init)(jax.random.key(0))
  x = 1.0 - jax.random.bernoulli(jax.random.key(1), 0.2, (10, 12, 12, 1))
  textbook = lambda p, x: _NormThenPool(5, 8, 2).apply({"params": p}, x)
  np.testing.assert_allclose(jax.jit(model.apply)(params, x),
                             jax.jit(textbook)(params, x), rtol=1e-4,
                             atol=1e-4)


def test_bn_steps_picks_the_step_row():
  model = ml.models.conv4(3, input_shape=(8, 8, 1), filters=4, num_blocks=2,
                          bn_steps=3)
  assert model.step_aware
  params = jax.jit(model.init)(jax.random.key(0))
  chex.assert_shape(params["norm1"]["scale"], (3, 4))
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  params["norm1"]["scale"] = params["norm1"]["scale"].at[2].set(5.0)
  apply = jax.jit(model.apply)  # the step is traced: one compile
  same = apply(params, x, 0), apply(params, x, 1)
  np.testing.assert_allclose(*same, rtol=1e-6)
  assert not np.allclose(apply(params, x, 2), same[0])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_per_step_row_is_exactly_the_indexed_row(dtype):
  # The one-hot product that picks a per-step batch-norm row (so that XLA
  # shares the steps' kernels) gives the row itself, and the same gradient.
  table = (100 * jax.random.normal(jax.random.key(2), (3, 5))).astype(dtype)
  weights = jax.random.normal(jax.random.key(3), (5,)).astype(dtype)
  pick = jax.jit(step_row)
  for step in range(3):
    np.testing.assert_array_equal(pick(table, jnp.int32(step)), table[step])
    np.testing.assert_array_equal(
        jax.grad(lambda t: jnp.sum(pick(t, step) * weights))(table),
        jax.grad(lambda t: jnp.sum(t[step] * weights))(table))


def test_bad_model_arguments():
  with pytest.raises(ValueError, match="n_way"):
    ml.models.conv4(1)
  with pytest.raises(ValueError, match="filters"):
    ml.models.conv4(5, filters=0)
  with pytest.raises(ValueError, match="bn_steps"):
    ml.models.conv4(5, bn_steps=-1)


@functools.cache
def _xla_conv4_reference():
  """Conv-4 on XLA's convolution: its initial parameters, parameters, an
  input and its output, inner rates, tasks and the second-order
  meta-gradient (vmapped over tasks)."""
  xla = ml.models.conv4(3, input_shape=(8, 8, 1), filters=3, num_blocks=2,
                        conv_impl="xla")
  init = jax.jit(xla.init)(jax.random.key(0))
  # Non-zero parameters (batch-norm offsets, head bias) are placed alike.
  params = jax.tree.map(
      lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape),
      init)
  x = jax.random.normal(jax.random.key(1), (7, 8, 8, 1))
  lrs = ml.fixed_inner_lrs(params, 0.3, 2)
  labels = jnp.tile(jnp.arange(3), (2, 2))
  xs = jax.random.normal(jax.random.key(3), (2, 6, 8, 8, 1))
  tasks = ml.Task(xs, labels, xs[:, ::-1], labels)
  return (init, params, x, jax.jit(xla.apply)(params, x), lrs, tasks,
          _meta_gradient(xla, params, lrs, tasks))


def _meta_gradient(model, params, lrs, tasks):
  return jax.jit(jax.grad(lambda p: ml.meta_loss(
      model.apply, p, lrs, tasks, None, unroll=True)[0]))(params)


@pytest.mark.parametrize("conv_impl",
                         ["matmul", "im2col", "im2col_vjp", "im2col_native",
                          "direct_native"])
def test_matmul_convolution_is_the_same_model(conv_impl):
  mm = ml.models.conv4(3, input_shape=(8, 8, 1), filters=3, num_blocks=2,
                       conv_impl=conv_impl)
  init, params, x, want, lrs, tasks, want_grad = _xla_conv4_reference()
  chex.assert_trees_all_equal(init, jax.jit(mm.init)(jax.random.key(0)))
  np.testing.assert_allclose(jax.jit(mm.apply)(params, x), want, rtol=1e-4,
                             atol=1e-5)
  # Second-order meta-gradients under vmap (per-task kernels) agree too.
  chex.assert_trees_all_close(_meta_gradient(mm, params, lrs, tasks),
                              want_grad, rtol=2e-3, atol=2e-5)


def test_conv_impl_auto_and_bad_name():
  assert ml.models.resolve_conv_impl("auto") == (
      "direct_native" if jax.default_backend() == "cpu" else "xla")
  with pytest.raises(ValueError, match="conv_impl.*auto, xla, matmul, "
                     "im2col, im2col_vjp, im2col_native, direct_native"):
    ml.models.conv4(5, conv_impl="cudnn")


def _slice_pool(x):
  """The max-pool as a select between four strided corner slices."""
  a, b, c, d = [x[..., dy::2, dx::2, :] for dy in range(2) for dx in range(2)]
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def test_max_pool_is_flax_max_pool_and_its_gradients():
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3))  # odd H: floored
  flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2),
                                    padding="VALID")
  np.testing.assert_array_equal(max_pool_2x2(x), flax_pool(x))
  # No ties in random normals: the same first and second derivatives.
  weights = jax.random.normal(jax.random.key(1), flax_pool(x).shape)
  loss = lambda pool: lambda x: jnp.sum(jnp.tanh(pool(x)) * weights)
  np.testing.assert_allclose(jax.grad(loss(max_pool_2x2))(x),
                             jax.grad(loss(flax_pool))(x), rtol=1e-6)
  tangent = jax.random.normal(jax.random.key(2), x.shape)
  hvp = lambda pool: jax.jvp(jax.grad(loss(pool)), (x,), (tangent,))[1]
  np.testing.assert_allclose(hvp(max_pool_2x2), hvp(flax_pool), rtol=1e-5,
                             atol=1e-6)
  # Second order on even sizes is selects on the windows' view: no pads
  # (JAX's transpose of strided slices), no scatters.
  even = x[:, :6]
  square = lambda pool: lambda x: jnp.sum(jax.grad(
      lambda x: jnp.sum(jnp.tanh(pool(x)) * weights[:, :3]))(x) ** 2)
  ops = str(jax.make_jaxpr(jax.grad(square(max_pool_2x2)))(even))
  assert " pad[" not in ops and "scatter" not in ops
  assert " pad[" in str(jax.make_jaxpr(jax.grad(square(_slice_pool)))(even))


class _NormThenPool(nn.Module):
  """Conv-4 in the textbook order, batch norm, ReLU, then max-pool, with
  Conv4's parameter names."""
  n_way: int
  filters: int
  num_blocks: int
  always_max: bool = False  # A wrong shortcut: pool before a flipped map.

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_blocks):
      x = nn.Conv(self.filters, (3, 3), padding="SAME", use_bias=False,
                  name=f"conv{i}")(x)
      if self.always_max:
        x = max_pool_2x2(x)
      x = nn.relu(TransductiveBatchNorm(name=f"norm{i}")(x))
      if not self.always_max:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    return nn.Dense(self.n_way, name="head")(x.reshape((x.shape[0], -1)))


def test_pool_before_the_normalisation_is_the_textbook_block():
  # Conv4 pools before normalising: the same function, and the same
  # second-order meta-gradient, also where a batch-norm scale is negative.
  with jax.enable_x64(True):
    model = ml.models.conv4(3, input_shape=(8, 8, 1), filters=4,
                            num_blocks=2, conv_impl="xla")
    params = jax.tree.map(lambda p: p.astype(jnp.float64),
                          jax.jit(model.init)(jax.random.key(0)))
    params = jax.tree.map(
        lambda p: p + jax.random.normal(jax.random.key(1), p.shape, p.dtype),
        params)
    assert float(jnp.min(params["norm0"]["scale"])) < 0 < float(
        jnp.max(params["norm0"]["scale"]))
    textbook = lambda p, x, **kw: _NormThenPool(3, 4, 2, **kw).apply(
        {"params": p}, x)
    x = jax.random.normal(jax.random.key(2), (7, 8, 8, 1), jnp.float64)
    forward = jax.jit(lambda p, x: (model.apply(p, x), textbook(p, x),
                                    textbook(p, x, always_max=True)))
    ours, want, always_max = forward(params, x)
    np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(always_max - want)) > 1e-3
    lrs = ml.fixed_inner_lrs(params, 0.3, 2)
    labels = jnp.tile(jnp.arange(3), (2, 2))
    xs = jax.random.normal(jax.random.key(3), (2, 6, 8, 8, 1), jnp.float64)
    tasks = ml.Task(xs, labels, xs[:, ::-1], labels)
    grad = lambda apply: jax.jit(jax.grad(lambda p: ml.meta_loss(
        apply, p, lrs, tasks, None, unroll=True)[0]))(params)
    chex.assert_trees_all_close(grad(model.apply), grad(textbook),
                                rtol=1e-9, atol=1e-12)


def test_max_pool_gives_a_tie_to_the_first_maximum_as_flax_does():
  x = jnp.asarray([[1., 3.], [3., 0.]]).reshape(1, 2, 2, 1)
  flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2),
                                    padding="VALID")
  grad = lambda pool: jax.grad(lambda x: pool(x).sum())(x)
  np.testing.assert_array_equal(grad(max_pool_2x2), grad(flax_pool))
  np.testing.assert_array_equal(grad(max_pool_2x2).ravel(), [0, 1, 0, 0])
