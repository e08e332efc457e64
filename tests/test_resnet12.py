"""ResNet-12: shapes, remat, convolution impls, per-step norm, meta-gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml

_WIDTHS = (4, 4, 8, 8)
_SHAPE = (16, 16, 3)


def _model(**kwargs):
  kwargs = {"input_shape": _SHAPE, "widths": _WIDTHS, **kwargs}
  return ml.models.resnet12(3, **kwargs)


# Two blocks on 8x8 images: the tests that compile gradients stay small.
_SMALL = {"widths": (4, 8), "input_shape": (8, 8, 3)}


def _x(batch=6, shape=_SMALL["input_shape"]):
  return jax.random.normal(jax.random.key(1), (batch, *shape))


@pytest.fixture(scope="module")
def small_params():
  """Parameters of every small model without bn_steps (one init compile)."""
  return jax.jit(_model(**_SMALL).init)(jax.random.key(0))


def test_shapes_and_parameter_names():
  model = _model(conv_impl="xla")
  params = jax.jit(model.init)(jax.random.key(0))
  assert sorted(params) == ["block0", "block1", "block2", "block3", "head"]
  chex.assert_shape(params["block1"]["conv0"]["kernel"], (3, 3, 4, 4))
  chex.assert_shape(params["block2"]["shortcut_conv"]["kernel"], (1, 1, 4, 8))
  chex.assert_shape(params["head"]["kernel"], (8, 3))
  # ANIL freezes the body by these path substrings.
  for path, _ in jax.tree_util.tree_leaves_with_path(params):
    name = jax.tree_util.keystr(path)
    assert ("head" in name) != ("conv" in name or "norm" in name), name
    # A convolution feeds a batch norm: a kernel, no bias.
    if "conv" in name:
      assert name.endswith("['kernel']"), name
  chex.assert_shape(jax.jit(model.apply)(params, _x(shape=_SHAPE)), (6, 3))


def test_bad_arguments():
  with pytest.raises(ValueError, match="n_way"):
    ml.models.resnet12(1)
  with pytest.raises(ValueError, match="widths"):
    ml.models.resnet12(5, widths=(8, 0))
  with pytest.raises(ValueError, match="bn_steps"):
    ml.models.resnet12(5, bn_steps=-1)
  with pytest.raises(ValueError, match="input_shape"):
    ml.models.resnet12(5, input_shape=(8, 8, 3))  # 4 pools need >= 16


@pytest.mark.parametrize("conv_impl",
                         ["matmul", "im2col", "im2col_vjp", "im2col_native",
                          "direct_native"])
def test_matmul_convolution_is_the_same_model(small_params, conv_impl):
  xla, mm = (_model(conv_impl=c, **_SMALL) for c in ("xla", conv_impl))
  np.testing.assert_allclose(jax.jit(mm.apply)(small_params, _x()),
                             jax.jit(xla.apply)(small_params, _x()),
                             rtol=1e-4, atol=1e-4)


def test_bn_steps_picks_the_step_row():
  model = _model(bn_steps=3, **_SMALL)
  assert model.step_aware
  params = jax.jit(model.init)(jax.random.key(0))
  chex.assert_shape(params["block1"]["norm2"]["scale"], (3, 8))
  params["block1"]["norm2"]["scale"] = (
      params["block1"]["norm2"]["scale"].at[2].set(5.0))
  x = _x()
  apply = jax.jit(model.apply)  # the step is traced: one compile
  same = apply(params, x, 0), apply(params, x, 1)
  np.testing.assert_allclose(*same, rtol=1e-6)
  assert not np.allclose(apply(params, x, 2), same[0])


def test_body_then_head_is_apply(small_params):
  model = _model(**_SMALL)
  feats = jax.jit(model.body)(small_params, _x())
  chex.assert_shape(feats, (6, 8))
  np.testing.assert_allclose(
      model.head({"head": small_params["head"]}, feats),
      jax.jit(model.apply)(small_params, _x()), rtol=1e-5, atol=1e-6)
  # As for conv-4: a step-aware model has no body/head split.
  assert _model(bn_steps=2).body is None


def test_remat_gives_the_same_maml_meta_gradient(small_params):
  # Second order through one inner step, with and without nn.remat per
  # block.
  lrs = ml.fixed_inner_lrs(small_params, 0.1, 1)
  k_s, k_q = jax.random.split(jax.random.key(1))
  tasks = ml.Task(jax.random.normal(k_s, (2, 3, 8, 8, 3)),
                  jnp.tile(jnp.arange(3), (2, 1)),
                  jax.random.normal(k_q, (2, 6, 8, 8, 3)),
                  jnp.tile(jnp.arange(3).repeat(2), (2, 1)))

  def meta_value_and_grad(remat):
    model = _model(conv_impl="xla", remat=remat, **_SMALL)
    return jax.jit(jax.value_and_grad(lambda p: ml.meta_loss(
        model.apply, p, lrs, tasks, None)[0]))(small_params)

  loss, grads = meta_value_and_grad(False)
  assert np.isfinite(loss)
  chex.assert_tree_all_finite(grads)
  assert float(jnp.abs(grads["block0"]["conv0"]["kernel"]).sum()) > 0
  chex.assert_trees_all_close(meta_value_and_grad(True), (loss, grads),
                              rtol=1e-5, atol=1e-6)
