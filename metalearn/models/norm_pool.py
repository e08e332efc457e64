"""Conv-4's and ResNet-12's layers between convolutions: transductive batch
norm (with MAML++'s per-step rows), ReLU and the 2x2 max-pool, written for
fast derivatives on XLA's CPU backend."""

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from metalearn import masking
from metalearn.models import im2col
from metalearn.types import Array


def step_row(table: Array, step: Array) -> Array:
  """``table[step]`` for a per-step table [S, F] -> [F], as a one-hot
  product (exact: one term is the row, the others are zeros).

  Indexed, the row's selection is folded into every fusion that reads it,
  with each inner step's index as a constant, so no two steps' batch-norm
  fusions are alike and XLA's CPU backend compiles each as a kernel of its
  own. A product is not folded in: the fusions take the row as an operand,
  are the same at every step, and are compiled once (docs/benchmarks.md,
  "MAML++'s per-step batch norm and kernel sharing").
  """
  onehot = jax.nn.one_hot(step, table.shape[0], dtype=table.dtype)
  return jnp.dot(onehot, table, precision=jax.lax.Precision.HIGHEST)


class TransductiveBatchNorm(nn.Module):
  """Batch norm with the current batch's statistics and a learnable affine.

  With ``bn_steps > 0`` the scale and offset have a leading ``[bn_steps]``
  axis and ``step`` picks the row: MAML++'s per-step batch-norm weights.
  With ``relu_pool`` it returns ``max_pool_2x2(relu(norm(x)))``, pooling
  first (:func:`normalized_relu_pool`).
  With ``mask`` (bool [B]) the statistics are those of the real rows alone
  (:func:`metalearn.masking.masked_moments`); every row is normalised.
  ``moments``: the mean and variance, [1, 1, 1, C] each, already known
  (:func:`conv_moments`), in place of the batch's. ``conv_pool`` (with
  ``relu_pool`` and ``moments``): ``sign [C] -> `` the convolution that
  made ``x`` at each window's corner where ``sign * x`` is largest, computed
  without ``x`` (:func:`metalearn.models.pooled_conv.conv_pool`).
  """
  bn_steps: int = 0
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: Array, step: Optional[Array] = None,
               mask: Optional[Array] = None, relu_pool: bool = False,
               moments: Optional[tuple[Array, Array]] = None,
               conv_pool: Optional[Callable[[Array], Array]] = None
               ) -> Array:
    features = x.shape[-1]
    lead = (self.bn_steps,) if self.bn_steps else ()
    scale = self.param("scale", nn.initializers.ones, (*lead, features))
    offset = self.param("offset", nn.initializers.zeros, (*lead, features))
    if self.bn_steps:
      step = jnp.clip(0 if step is None else step, 0, self.bn_steps - 1)
      scale, offset = step_row(scale, step), step_row(offset, step)
    if moments is not None:  # Computed elsewhere, e.g. conv_moments.
      mean, var = moments
    elif mask is None:
      mean, var = shifted_moments(x, tuple(range(x.ndim - 1)))
    else:
      mean, var = masking.masked_moments(x, mask)
    inv = jax.lax.rsqrt(var + self.epsilon)
    lead = (1,) * (x.ndim - 1)
    scale = scale.reshape(*lead, features)
    offset = offset.reshape(*lead, features)
    if relu_pool and conv_pool is not None:
      # The convolution and the corner choice in one call: x is not read.
      sign = jnp.where(inv * scale >= 0, 1.0, -1.0).astype(x.dtype)
      picked = conv_pool(sign.reshape(-1))
      return nn.relu((picked - mean) * inv * scale + offset)
    if relu_pool:
      return normalized_relu_pool(x, mean, inv, scale, offset)
    return (x - mean) * inv * scale + offset


def shifted_moments(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
  """Mean and (biased) variance of ``x`` over ``axes``, kept as size-1 axes,
  in one pass over ``x``: the moments of ``x - shift``, ``shift`` one of
  its values per channel.

  Two passes (the mean, then the mean of the squared deviations) wrote the
  deviations out at full size for the second reduction to read back. With a
  shift that is one of the values, ``E[(x - s)^2] - E[x - s]^2`` cancels
  little: ``(s - mean)^2`` is at most the count times the variance, and
  near the mean for all but an outlying first value.
  The variance does not depend on ``s``, so holding it constant
  (``stop_gradient``) leaves every derivative exact.
  """
  first = tuple(0 if a in axes else slice(None) for a in range(x.ndim))
  shift = jax.lax.stop_gradient(jnp.expand_dims(x[first], axes))
  shifted = x - shift
  mean = jnp.mean(shifted, axis=axes, keepdims=True)
  var = jnp.mean(shifted * shifted, axis=axes, keepdims=True) - mean * mean
  return mean + shift, var


def conv_moments(x: Array, kernel: Array) -> tuple[Array, Array]:
  """The per-channel mean and variance over [B, H, W] of the 3x3 SAME
  convolution of x [B, H, W, C] with kernel [3, 3, C, D], [1, 1, 1, D]
  each, from the moments of x's windows instead of the output.

  Each output pixel is a window w (9 C values) times the kernel K, so its
  mean is ``E[w] K`` and its variance ``K^T Cov(w) K``, per channel: the
  same numbers, from a [9 C, 9 C] covariance of the input, where the
  statistics of the output take passes over [B, H, W, D] values. For a
  first layer (C of 1 or 3 and D in the tens) the input is many times
  smaller than the output, and the derivatives of the statistics (MAML
  differentiates them twice) touch no full-size array at all.
  """
  rows = im2col.windows(x).reshape(-1, 9 * x.shape[-1])
  matrix = kernel.reshape(rows.shape[-1], -1)
  window_mean = jnp.mean(rows, axis=0, keepdims=True)
  centred = rows - window_mean
  highest = jax.lax.Precision.HIGHEST
  cov = jnp.dot(centred.T, centred, precision=highest) / rows.shape[0]
  mean = jnp.dot(window_mean, matrix, precision=highest)  # [1, D]
  var = jnp.sum(matrix * jnp.dot(cov, matrix, precision=highest), axis=0)
  lead = (1,) * (x.ndim - 1)
  return mean.reshape(*lead, -1), var.reshape(*lead, -1)


def normalized_relu_pool(x: Array, mean: Array, inv: Array, scale: Array,
                          offset: Array) -> Array:
  """``max_pool_2x2(relu((x - mean) * inv * scale + offset))``, the same
  values, with the pool first: a channel whose ``inv * scale`` is >= 0 is
  an increasing map of ``x``, which a max commutes with, and one whose is
  < 0 a decreasing map, which turns the max into a min. So the normalisation
  runs on a quarter of the values, and its derivatives too, instead of on
  the whole [B, H, W, C] convolution output (docs/benchmarks.md, "Batch
  norm after the pool")."""
  sign = jnp.where(inv * scale >= 0, 1.0, -1.0).astype(x.dtype)
  picked = max_pool_2x2(x, by=sign * x)
  return nn.relu((picked - mean) * inv * scale + offset)


def max_pool_2x2(x: Array, by: Optional[Array] = None) -> Array:
  """``nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")`` as a
  selection of one corner of each window: [B, H, W, C] -> [B, H // 2,
  W // 2, C]. With ``by`` (x's shape), each window's corner is the one
  where ``by`` is largest; derivatives flow to ``x`` alone (the choice is
  piecewise constant).

  The same values, and the same gradient (to the first maximum of a window
  in row-major order, as ``select_and_scatter`` gives it), but every
  derivative is an elementwise select on a view of the windows
  (:func:`_take_corner`).
  ``reduce_window``'s derivatives are ``select_and_scatter`` and,
  differentiated again for MAML's meta-gradient, ``select_and_gather``,
  which XLA's CPU backend runs slowly (docs/performance.md). ``jnp.max``
  over a reshaped window is no way out: its derivative divides by the
  count of values equal to the maximum, and a ResNet-12 meta-gradient came
  out NaN with it under the test suite's XLA flags (tests/xla_flags.py).
  """
  height, width = x.shape[-3] // 2 * 2, x.shape[-2] // 2 * 2
  keys = jax.lax.stop_gradient(x if by is None else by)
  ka, kb, kc, kd = [keys[..., dy:height:2, dx:width:2, :]
                    for dy in range(2) for dx in range(2)]
  corner = jnp.where((ka >= kb) & (ka >= kc) & (ka >= kd), 0,
                     jnp.where((kb >= kc) & (kb >= kd), 1,
                               jnp.where(kc >= kd, 2, 3))).astype(jnp.int8)
  return _take_corner(x[..., :height, :width, :], corner)


def _windows(x: Array) -> Array:
  """[..., 2h, 2w, C] -> [..., h, 2, w, 2, C]: the 2x2 windows as axes (a
  reshape that moves no data)."""
  *lead, height, width, channels = x.shape
  return x.reshape(*lead, height // 2, 2, width // 2, 2, channels)


def _is_corner(corner: Array) -> Array:
  """int8 [..., h, w, C] corner numbers (2 dy + dx) -> bool [..., h, 2, w,
  2, C], true at each window's chosen corner."""
  numbers = (2 * jnp.arange(2, dtype=jnp.int8).reshape(2, 1, 1, 1)
             + jnp.arange(2, dtype=jnp.int8).reshape(1, 1, 2, 1))
  lead = corner.ndim - 3
  return (corner[..., :, None, :, None, :]
          == numbers.reshape((1,) * lead + (1, 2, 1, 2, 1)))


def _take_corner(x: Array, corner: Array) -> Array:
  """x [..., 2h, 2w, C] at each window's ``corner`` -> [..., h, w, C], as a
  masked sum over the windows' view.

  JAX's transpose of that is a broadcast, the same mask and a reshape: one
  select at full size where the transpose of four corner slices padded
  each back to full size and added them. The transpose of the transpose is
  this function again, so derivatives of every order are selects."""
  windows = _windows(x)
  picked = jnp.where(_is_corner(corner), windows, jnp.zeros_like(windows))
  return jnp.sum(picked, axis=(-4, -2))


def put_corner(g: Array, corner: Array) -> Array:
  """The transpose of taking each window's ``corner``: g [..., h, w, C] put
  at the corner of zeros -> [..., 2h, 2w, C] (one select over the windows'
  view)."""
  *lead, height, width, channels = g.shape
  spread = jnp.broadcast_to(g[..., :, None, :, None, :],
                            (*lead, height, 2, width, 2, channels))
  put = jnp.where(_is_corner(corner), spread, jnp.zeros_like(spread))
  return put.reshape(*lead, 2 * height, 2 * width, channels)
