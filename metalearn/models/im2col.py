"""A 3x3, stride-1, SAME convolution as one im2col matmul, with derivatives
that are themselves im2col matmuls.

JAX's derivative of ``windows(x) @ kernel`` with respect to ``x`` is the
transpose of the window stacking: nine slices of the [B, H, W, 9 C]
cotangent, each padded back to [B, H + 2, W + 2, C] and summed. MAML's
meta-gradient differentiates that again. :func:`conv3x3` instead has a
hand-written VJP made of two functions that close under differentiation:

- the input gradient is the transposed convolution: the output gradient
  convolved with the kernel flipped in space and transposed in channels
  (``conv3x3(..., transposed=True)``, whose own input gradient is the
  convolution again);
- the kernel gradient :func:`kernel_grad` is ``windows(x)^T @ g``, whose own
  VJP is the convolution again, of ``x`` and of ``g``.

So every derivative, of any order, stacks windows and multiplies; none
scatters. Reverse mode only: ``jax.jvp`` through :func:`conv3x3` raises
(``jax.custom_vjp``), so forward-over-reverse Hessian-vector products need
the plain im2col convolution.

``impl`` picks how the two are computed: ``"xla"``, windows and matmul in
XLA; ``"windows"``, the windows as one C++ loop
(:mod:`metalearn.models.native_windows`, a CPU custom call) instead of XLA's
pads, slices and concatenation, for the kernel gradient written straight
into the layout its matmul reads; ``"direct"``, both functions as C++ loops
that never build the windows (:mod:`metalearn.models.native_conv`), for
float32 and float64 (other dtypes take ``"windows"``).
"""

import functools

import jax
import jax.numpy as jnp

from metalearn.models import native_conv
from metalearn.models import native_windows
from metalearn.types import Array


def windows(x: Array) -> Array:
  """The nine shifted 3x3 windows of a zero-padded image stacked on the
  channel axis: [B, H, W, C] -> [B, H, W, 9 C], window-major (dy, dx)."""
  height, width = x.shape[-3:-1]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate(
      [padded[:, dy:dy + height, dx:dx + width, :]
       for dy in range(3) for dx in range(3)], axis=-1)


def _windows(x: Array, native: bool) -> Array:
  return native_windows.windows(x) if native else windows(x)


def im2col_conv(x: Array, kernel: Array, native: bool = False) -> Array:
  """x [B, H, W, C] and kernel [3, 3, C, D] -> [B, H, W, D]: one matmul with
  a 9 C deep contraction; JAX differentiates it (not with ``native``)."""
  channels, features = kernel.shape[2:]
  return jnp.einsum("bhwk,kd->bhwd", _windows(x, native),
                    kernel.reshape(9 * channels, features))


IMPLS = ("xla", "windows", "direct")


def _direct_dtype(a: Array, b: Array, impl: str):
  """The common dtype if ``impl`` is ``direct`` and its kernels take it,
  else None (the windows then)."""
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {', '.join(IMPLS)}; got "
                     f"{impl!r}.")
  dtype = jnp.result_type(a, b)
  return dtype if impl == "direct" and native_conv.supports(dtype) else None


def _flipped(kernel: Array) -> Array:
  """[3, 3, C, D] -> [3, 3, D, C], mirrored in both spatial axes: the kernel
  whose SAME convolution is the transpose of ``kernel``'s."""
  return jnp.swapaxes(kernel[::-1, ::-1], 2, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv3x3(x: Array, kernel: Array, impl: str = "xla",
            transposed: bool = False) -> Array:
  """:func:`im2col_conv` with im2col derivatives (the module docstring).
  x [B, H, W, C], kernel [3, 3, C, D] -> [B, H, W, D]; ``impl``: ``xla``,
  ``windows`` or ``direct`` (the last two a C++ custom call, CPU only).

  ``transposed``: the transpose of ``kernel``'s convolution instead, x [B,
  H, W, D] -> [B, H, W, C] (the convolution with the kernel flipped), which
  the input gradient is. It is its own function so that the input gradient
  of an input gradient convolves with ``kernel`` itself, where flipping a
  flipped kernel would copy it twice; ``direct`` reads it flipped in place.
  """
  dtype = _direct_dtype(x, kernel, impl)
  if dtype is not None:
    return native_conv.conv(x.astype(dtype), kernel.astype(dtype),
                            flipped=transposed)
  return im2col_conv(x, _flipped(kernel) if transposed else kernel,
                     impl != "xla")


def _conv3x3_fwd(x, kernel, impl, transposed):
  return conv3x3(x, kernel, impl, transposed), (x, kernel)


def _conv3x3_bwd(impl, transposed, residuals, g):
  # The transpose of the transpose is the convolution; the kernel gradient
  # of the transposed one is the kernel gradient with x and g swapped.
  x, kernel = residuals
  grad_kernel = kernel_grad(g, x, impl) if transposed else kernel_grad(
      x, g, impl)
  return (conv3x3(g, kernel, impl, not transposed).astype(x.dtype),
          grad_kernel.astype(kernel.dtype))


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def kernel_grad(x: Array, g: Array, impl: str = "xla") -> Array:
  """The kernel gradient of ``conv3x3(x, kernel, impl)`` given the output
  gradient: x [B, H, W, C], g [B, H, W, D] -> [3, 3, C, D]."""
  channels, features = x.shape[-1], g.shape[-1]
  dtype = _direct_dtype(x, g, impl)
  if dtype is not None:
    return native_conv.kernel_grad(x.astype(dtype), g.astype(dtype))
  if impl != "xla":  # The windows already in the matmul's layout.
    grad = jnp.einsum("kbhw,bhwd->kd", native_windows.tap_major_windows(x), g)
  else:
    grad = jnp.einsum("bhwk,bhwd->kd", windows(x), g)
  return grad.reshape(3, 3, channels, features)


def _kernel_grad_fwd(x, g, impl):
  return kernel_grad(x, g, impl), (x, g)


def _kernel_grad_bwd(impl, residuals, cotangent):
  x, g = residuals
  return (conv3x3(g, cotangent, impl, transposed=True).astype(x.dtype),
          conv3x3(x, cotangent, impl).astype(g.dtype))


kernel_grad.defvjp(_kernel_grad_fwd, _kernel_grad_bwd)
