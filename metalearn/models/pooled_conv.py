"""A first layer's convolution and the max-pool's choice of corner as one
C++ call, on a CPU in float32 or float64.

Conv-4's first convolution of a grey image writes 64 values for each one
it reads, and the pool keeps one in four of them: written whole, the
output and its gradient were passes over the largest arrays of a meta-step.
:func:`conv_pool` convolves a few images at a time in the cache and writes
only each window's chosen corner and which corner it was; the kernel
gradient puts the pooled gradient back at the corners in the cache too.

Two functions close under differentiation, given the corners (which are
piecewise constant: no derivative flows to them):

- :func:`conv_take` ``(x, kernel, corner)``, the convolution at the corners,
  whose kernel gradient is :func:`kernel_grad_put`;
- :func:`kernel_grad_put` ``(x, g, corner)``, whose gradient in ``g`` is
  :func:`conv_take` again.

Derivatives in ``x`` (none for a model's input) go through the full-size
transposed convolution of :mod:`metalearn.models.im2col`.
"""

import jax

from metalearn.models import im2col
from metalearn.models import native_conv
from metalearn.models.norm_pool import put_corner
from metalearn.types import Array


def supports(x: Array, kernel: Array) -> bool:
  """Whether :func:`conv_pool` takes these: float32 or float64, an even
  height and width."""
  return (x.dtype == kernel.dtype and native_conv.supports(x.dtype)
          and x.shape[-3] % 2 == 0 and x.shape[-2] % 2 == 0)


@jax.custom_vjp
def conv_take(x: Array, kernel: Array, corner: Array) -> Array:
  """x [..., H, W, C], kernel [3, 3, C, D], corner int8 [..., H / 2, W / 2,
  D] -> the convolution at each window's corner, [..., H / 2, W / 2, D]."""
  return native_conv.conv_take(x, kernel, corner)


def _conv_take_fwd(x, kernel, corner):
  return conv_take(x, kernel, corner), (x, kernel, corner)


def _grad_x(g: Array, corner: Array, kernel: Array) -> Array:
  """The input gradient: the pooled gradient put back at full size and
  convolved with the transposed kernel."""
  return im2col.conv3x3(put_corner(g, corner), kernel, "direct",
                        transposed=True)


def _conv_take_bwd(residuals, g):
  x, kernel, corner = residuals
  return _grad_x(g, corner, kernel), kernel_grad_put(x, g, corner), None


conv_take.defvjp(_conv_take_fwd, _conv_take_bwd)


@jax.custom_vjp
def kernel_grad_put(x: Array, g: Array, corner: Array) -> Array:
  """The kernel gradient of :func:`conv_take`: x [..., H, W, C], g [...,
  H / 2, W / 2, D] -> [3, 3, C, D]."""
  return native_conv.kernel_grad_put(x, g, corner)


def _kernel_grad_put_fwd(x, g, corner):
  return kernel_grad_put(x, g, corner), (x, g, corner)


def _kernel_grad_put_bwd(residuals, cotangent):
  x, g, corner = residuals
  return _grad_x(g, corner, cotangent), conv_take(x, cotangent, corner), None


kernel_grad_put.defvjp(_kernel_grad_put_fwd, _kernel_grad_put_bwd)


def conv_pool(x: Array, kernel: Array, sign: Array) -> tuple[Array, Array]:
  """The convolution of x [..., H, W, C] with kernel [3, 3, C, D] at each
  2x2 window's corner where ``sign [D] * y`` is largest (the first in
  row-major order, as :func:`metalearn.models.norm_pool.max_pool_2x2`
  picks): (pooled, corner), [..., H / 2, W / 2, D] each.

  The corners come from one call and the values from :func:`conv_take`, a
  second convolution, so that they carry its derivatives: cheap for a
  first layer's few input channels."""
  frozen = jax.lax.stop_gradient
  _, corner = native_conv.conv_pool(frozen(x), frozen(kernel), frozen(sign))
  return conv_take(x, kernel, corner), corner
