"""The few-shot ResNet-12 (Lee et al. 2019, MetaOptNet; Oreshkin et al. 2018).

4 residual blocks, each 3 x [3x3 conv, batch norm, leaky ReLU 0.1] (the last
activation after the shortcut is added) with a 1x1 conv + batch norm
shortcut, then a 2x2 max-pool; widths (64, 160, 320, 640) by default. Then a
global average pool and a dense ``head`` to ``n_way`` logits. Batch norm is
conv-4's transductive one (with MAML++'s per-step rows ``bn_steps``), so
``apply(params, x)`` is a pure function.

Parameters: ``block{i}/conv{j}``, ``block{i}/norm{j}`` (j = 0, 1, 2),
``block{i}/shortcut_conv``, ``block{i}/shortcut_norm`` and ``head``: every
body leaf's path contains ``conv`` or ``norm`` (what ANIL freezes). Every
convolution feeds a batch norm, so it has a ``kernel`` and no ``bias`` (the
norm's ``offset`` is the shift; a bias would have no effect).
"""

from typing import Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from metalearn.models import registry
from metalearn.models.conv4 import Model
from metalearn.models.conv4 import conv3x3
from metalearn.models.conv4 import resolve_conv_impl
from metalearn.models.conv4 import without_head
from metalearn.models.norm_pool import TransductiveBatchNorm
from metalearn.models.norm_pool import max_pool_2x2
from metalearn.types import Array, PyTree

WIDTHS = (64, 160, 320, 640)
_SLOPE = 0.1  # leaky ReLU


class PointwiseMatmulConv(nn.Module):
  """A 1x1 convolution as one matmul: ``nn.Conv(features, (1, 1),
  use_bias=False)``'s parameter (``kernel`` [1, 1, C_in, C_out]) and
  function. Input [B, H, W, C_in] -> [B, H, W, C_out]."""
  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (1, 1, x.shape[-1], self.features))
    return jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])


class ResidualBlock(nn.Module):
  """3 x [3x3 conv, norm, leaky ReLU] + 1x1 shortcut, then 2x2 max-pool.

  Input [B, H, W, C] -> [B, H // 2, W // 2, features].
  """
  features: int
  bn_steps: int = 0
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: Array, step: Optional[Array] = None,
               mask: Optional[Array] = None) -> Array:
    matmul = self.conv_impl != "xla"
    if matmul:
      shortcut = PointwiseMatmulConv(self.features, name="shortcut_conv")(x)
    else:
      shortcut = nn.Conv(self.features, (1, 1), use_bias=False,
                         name="shortcut_conv")(x)
    shortcut = TransductiveBatchNorm(self.bn_steps, name="shortcut_norm")(
        shortcut, step, mask)
    for j in range(3):
      x = conv3x3(self.features, self.conv_impl, f"conv{j}")(x)
      x = TransductiveBatchNorm(self.bn_steps, name=f"norm{j}")(x, step,
                                                                mask)
      if j < 2:
        x = nn.leaky_relu(x, _SLOPE)
    x = nn.leaky_relu(x + shortcut, _SLOPE)
    return max_pool_2x2(x)


class ResNet12(nn.Module):
  """ResNet-12 and linear head. Input [B, H, W, C] -> [B, n_way].

  With ``n_way=None`` the body alone: features [B, widths[-1]]. ``remat``
  wraps each block in ``nn.remat`` (same function and parameters).
  """
  n_way: Optional[int]
  widths: Sequence[int] = WIDTHS
  bn_steps: int = 0
  conv_impl: str = "xla"
  remat: bool = False

  @nn.compact
  def __call__(self, x: Array, step: Optional[Array] = None,
               mask: Optional[Array] = None) -> Array:
    block = nn.remat(ResidualBlock) if self.remat else ResidualBlock
    for i, width in enumerate(self.widths):
      x = block(width, self.bn_steps, self.conv_impl, name=f"block{i}")(
          x, step, mask)
    x = jnp.mean(x, axis=(1, 2))
    if self.n_way is None:
      return x
    return nn.Dense(self.n_way, name="head")(x)


def _check(n_way: int, input_shape: tuple[int, ...], widths: Sequence[int],
           bn_steps: int) -> None:
  if n_way < 2:
    raise ValueError(f"n_way must be >= 2, got {n_way}.")
  if not widths or any(w < 1 for w in widths):
    raise ValueError(f"widths must be one or more ints >= 1, got {widths}.")
  if bn_steps < 0:
    raise ValueError(f"bn_steps must be >= 0, got {bn_steps}.")
  if len(input_shape) != 3 or min(input_shape[:2]) < 2**len(widths):
    raise ValueError(f"input_shape must be (H, W, C) with H, W >= "
                     f"2**len(widths) = {2**len(widths)}, got {input_shape}.")


def resnet12(n_way: int,
             *,
             input_shape: tuple[int, ...] = (84, 84, 3),
             widths: Sequence[int] = WIDTHS,
             bn_steps: int = 0,
             conv_impl: str = "auto",
             remat: bool = False) -> Model:
  """Builds ResNet-12.

  Args:
    n_way: number of output classes; >= 2.
    input_shape: one input's shape (H, W, C); H, W >= 2**len(widths).
    widths: channels of each residual block (each halves H and W); ints >= 1.
    bn_steps: 0 for one batch-norm affine per layer; N > 0 for one per inner
      step (MAML++), which makes ``apply`` take the step index.
    conv_impl: ``xla``, ``matmul``, ``im2col``, ``im2col_vjp``,
      ``im2col_native``, ``direct_native`` or ``auto``,
      as in :func:`metalearn.models.conv4`; same parameters and function
      every way.
    remat: ``nn.remat`` each residual block: its activations are recomputed
      on the way back instead of kept. Same parameters and function.

  Returns:
    A :class:`Model`. Without ``bn_steps`` it also has ``body(params, x) ->
    features [B, widths[-1]]`` and ``head(params, features) -> logits [B,
    n_way]`` (reads ``params["head"]`` only), ``apply(params, x) ==
    head(params, body(params, x))``; as for conv-4, a step-aware model has
    neither.
  """
  widths = tuple(int(w) for w in widths)
  _check(n_way, tuple(input_shape), widths, bn_steps)
  module = ResNet12(n_way, widths, bn_steps, resolve_conv_impl(conv_impl),
                    remat)
  body_module = module.clone(n_way=None)
  head_module = nn.Dense(n_way)
  dummy = jnp.zeros((2, *input_shape), jnp.float32)

  def init(key):
    return module.init(key, dummy)["params"]

  def features(params: PyTree, x: Array, step: Optional[Array] = None,
               mask: Optional[Array] = None):
    return body_module.apply({"params": without_head(params)}, x, step, mask)

  def head(params: PyTree, feats: Array,
           mask: Optional[Array] = None) -> Array:
    del mask  # Row by row: no batch statistics.
    return head_module.apply({"params": params["head"]}, feats)

  if bn_steps:
    def apply(params, x, step, mask=None):
      return head(params, features(params, x, step, mask))
    return Model(init, apply, step_aware=True)

  def apply(params, x, mask=None):
    return head(params, features(params, x, mask=mask))

  def body(params, x, mask=None):
    return features(params, x, mask=mask)
  return Model(init, apply, body=body, head=head)


registry.register(registry.ModelSpec(
    "resnet12",
    build=lambda c, shape: resnet12(
        shape.n_out, input_shape=shape.input_shape, widths=tuple(c.widths),
        bn_steps=shape.bn_steps, conv_impl=c.conv_impl,
        remat=c.block_remat),
    fields=("widths", "conv_impl", "block_remat"),
    describe=lambda c: f"ResNet-12 {'-'.join(map(str, c.widths))}",
    check=lambda c: registry.positive_ints(c, "widths")))
