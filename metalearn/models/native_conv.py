"""A 3x3 SAME convolution and its kernel gradient as C++ loops that never
build the im2col windows, XLA FFI custom calls on a CPU.

:mod:`metalearn.models.im2col` multiplies the nine shifted windows of the
input, [B, H, W, 9 C], by the kernel: nine times the input written to memory
and read back, which bounds a Conv-4 meta-step on a CPU more than the
arithmetic does. ``native_conv.cc`` reads each zero-bordered image in place
instead, with the kernel's output channels held in vector registers (the
way a GEMM kernel works through a block of its output), and spreads the
images over XLA's intra-op threads. Both functions are linear in each
argument, so :func:`metalearn.models.im2col.conv3x3` builds every
derivative of the convolution, of any order, from these two. float32 and
float64; :func:`supports` says which. Built with the windows' kernel
(:mod:`metalearn.models.native_windows`). Measured: docs/benchmarks.md
("The convolution without windows").
"""

import math
import re

import jax
import jax.numpy as jnp

from metalearn.models import native_windows
from metalearn.types import Array

DTYPES = (jnp.float32, jnp.float64)


def supports(dtype) -> bool:
  """Whether the kernels take ``dtype`` (float32 and float64)."""
  return jnp.dtype(dtype) in tuple(map(jnp.dtype, DTYPES))


def _check(x: Array, other: Array, what: str) -> None:
  if x.ndim < 3 or other.ndim < 3:
    raise ValueError(f"{what} needs x [..., H, W, C]; got shapes {x.shape} "
                     f"and {other.shape}.")
  if x.dtype != other.dtype or not supports(x.dtype):
    raise ValueError(f"{what} takes two float32 or two float64 arrays; got "
                     f"{x.dtype} and {other.dtype}.")
  reason = native_windows.unavailable_reason()
  if reason:
    raise RuntimeError(f"the native convolution is unavailable: {reason}")


def conv(x: Array, kernel: Array, flipped: bool = False) -> Array:
  """x [..., H, W, C], kernel [3, 3, C, D] -> [..., H, W, D]: the 3x3,
  stride-1, SAME convolution (cross-correlation, as XLA's) without bias.
  With ``flipped``, kernel [3, 3, D, C] is read mirrored in both spatial
  axes and transposed in channels: the transpose of its own convolution,
  without a flipped copy in memory.

  Under ``vmap`` both gain the batched axes in front (an unbatched operand
  is broadcast), so each task convolves with its own kernel.

  Raises:
    ValueError: bad ranks or shapes, or dtypes other than two float32 or
      two float64.
    RuntimeError: the kernel cannot be built here (the reason).
  """
  _check(x, kernel, "conv")
  in_axis = 3 if flipped else 2
  if (kernel.ndim != 4 or kernel.shape[:2] != (3, 3)
      or kernel.shape[in_axis] != x.shape[-1]):
    want = ("[3, 3, D, {}]" if flipped else "[3, 3, {}, D]").format(
        x.shape[-1])
    raise ValueError(f"conv{' (flipped)' if flipped else ''} needs kernel "
                     f"{want}; got {kernel.shape}.")
  out = jax.ShapeDtypeStruct((*x.shape[:-1], kernel.shape[5 - in_axis]),
                             x.dtype)
  return jax.ffi.ffi_call(native_windows.CONV_TARGET, out,
                          vmap_method="broadcast_all")(
                              x, kernel, flipped=bool(flipped))


def kernel_grad(x: Array, g: Array) -> Array:
  """The kernel gradient of :func:`conv` given its output gradient: x [...,
  H, W, C], g [..., H, W, D] -> [3, 3, C, D], summed over the leading axes
  and the pixels.

  Raises:
    ValueError: bad ranks or shapes, or dtypes other than two float32 or
      two float64.
    RuntimeError: the kernel cannot be built here (the reason).
  """
  _check(x, g, "kernel_grad")
  if g.shape[:-1] != x.shape[:-1]:
    raise ValueError(f"kernel_grad needs g [..., H, W, D] over x's pixels; "
                     f"got x {x.shape} and g {g.shape}.")
  out = jax.ShapeDtypeStruct((3, 3, x.shape[-1], g.shape[-1]), x.dtype)
  # vmap adds leading axes in front of both, and of the result; the
  # ``inner_rank`` fixed here tells the kernel which of x's axes are summed.
  return jax.ffi.ffi_call(native_windows.CONV_KERNEL_GRAD_TARGET, out,
                          vmap_method="broadcast_all")(
                              x, g, inner_rank=x.ndim - 3)


def _check_pool(x: Array, kernel: Array, what: str) -> None:
  _check(x, kernel, what)
  if kernel.ndim != 4 or kernel.shape[:3] != (3, 3, x.shape[-1]):
    raise ValueError(f"{what} needs kernel [3, 3, {x.shape[-1]}, D]; got "
                     f"{kernel.shape}.")
  if x.shape[-3] % 2 or x.shape[-2] % 2:
    raise ValueError(f"{what} needs an even height and width; got "
                     f"{x.shape[-3:-1]}.")


def _pooled_shape(x: Array, features: int) -> tuple[int, ...]:
  return (*x.shape[:-3], x.shape[-3] // 2, x.shape[-2] // 2, features)


def conv_pool(x: Array, kernel: Array, sign: Array) -> tuple[Array, Array]:
  """:func:`conv`, then each 2x2 window's corner where ``sign * y`` is
  largest (the first in row-major order): x [..., H, W, C], kernel [3, 3,
  C, D], sign [D] -> (pooled, corner), both [..., H / 2, W / 2, D], corner
  int8 (2 dy + dx). The convolution never reaches memory whole.

  Raises:
    ValueError: bad shapes (H and W must be even) or dtypes.
    RuntimeError: the kernel cannot be built here (the reason).
  """
  _check_pool(x, kernel, "conv_pool")
  if sign.shape != kernel.shape[-1:] or sign.dtype != x.dtype:
    raise ValueError(f"conv_pool needs sign [{kernel.shape[-1]}] of "
                     f"{x.dtype}; got {sign.shape} {sign.dtype}.")
  shape = _pooled_shape(x, kernel.shape[-1])
  out = (jax.ShapeDtypeStruct(shape, x.dtype),
         jax.ShapeDtypeStruct(shape, jnp.int8))
  return jax.ffi.ffi_call(native_windows.CONV_POOL_TARGET, out,
                          vmap_method="broadcast_all")(x, kernel, sign)


def conv_take(x: Array, kernel: Array, corner: Array) -> Array:
  """:func:`conv` at the given corner of each 2x2 window: x [..., H, W, C],
  kernel [3, 3, C, D], corner int8 [..., H / 2, W / 2, D] -> [..., H / 2,
  W / 2, D].

  Raises:
    ValueError: bad shapes or dtypes.
    RuntimeError: the kernel cannot be built here (the reason).
  """
  _check_pool(x, kernel, "conv_take")
  shape = _pooled_shape(x, kernel.shape[-1])
  if corner.shape != shape or corner.dtype != jnp.int8:
    raise ValueError(f"conv_take needs int8 corners {shape}; got "
                     f"{corner.shape} {corner.dtype}.")
  out = jax.ShapeDtypeStruct(shape, x.dtype)
  return jax.ffi.ffi_call(native_windows.CONV_TAKE_TARGET, out,
                          vmap_method="broadcast_all")(x, kernel, corner)


def kernel_grad_put(x: Array, g: Array, corner: Array) -> Array:
  """The kernel gradient of :func:`conv_take` given its output gradient:
  :func:`kernel_grad` of x [..., H, W, C] and g [..., H / 2, W / 2, D] put
  back at each window's ``corner`` (zeros elsewhere) -> [3, 3, C, D].

  Raises:
    ValueError: bad shapes or dtypes.
    RuntimeError: the kernel cannot be built here (the reason).
  """
  _check(x, g, "kernel_grad_put")
  shape = _pooled_shape(x, g.shape[-1])
  if x.shape[-3] % 2 or x.shape[-2] % 2 or g.shape != shape:
    raise ValueError(f"kernel_grad_put needs an even H and W and g {shape}; "
                     f"got x {x.shape} and g {g.shape}.")
  if corner.shape != shape or corner.dtype != jnp.int8:
    raise ValueError(f"kernel_grad_put needs int8 corners {shape}; got "
                     f"{corner.shape} {corner.dtype}.")
  out = jax.ShapeDtypeStruct((3, 3, x.shape[-1], g.shape[-1]), x.dtype)
  return jax.ffi.ffi_call(native_windows.CONV_KERNEL_GRAD_PUT_TARGET, out,
                          vmap_method="broadcast_all")(
                              x, g, corner, inner_rank=x.ndim - 3)


# An HLO custom call (a compiled program's text): result shape, target and
# the operands' shapes; or a StableHLO one (a lowered program's text).
_TARGETS = r"(metalearn_conv(?:_kernel_grad(?:_put)?|_pool|_take)?)"
_HLO_CALL = re.compile(
    r"= \(?\w+\[([\d,]*)\][^=]*? custom-call\(.*?custom_call_target=\""
    + _TARGETS + r"\", operand_layout_constraints=\{\w+\[([\d,]*)\]")
_MLIR_CALL = re.compile(
    r"stablehlo\.custom_call @" + _TARGETS + r"\(.*: "
    r"\(tensor<([\dx]*)x\w+>, .*-> \(?tensor<([\dx]*)x\w+>")


def flops_in_text(text: str) -> float:
  """Multiply-add FLOPs (2 per multiply-add) of the :func:`conv`,
  :func:`kernel_grad`, :func:`conv_pool`, :func:`conv_take` and
  :func:`kernel_grad_put` calls in a program's HLO or StableHLO text, each
  call counted once (a loop's body once, as XLA's cost analysis counts
  it), which XLA's cost analysis leaves out: custom calls are opaque to
  it. The count is that of the same convolution as a windows matmul."""
  total = 0.0
  for line in text.splitlines():
    hlo, mlir = _HLO_CALL.search(line), _MLIR_CALL.search(line)
    if hlo:
      out, first = hlo.group(1), hlo.group(3)
    elif mlir:
      first, out = mlir.group(2), mlir.group(3)
    else:
      continue
    out_shape = [int(d) for d in re.split("[,x]", out) if d]
    x_shape = [int(d) for d in re.split("[,x]", first) if d]
    # D output channels (the kernel gradient's last axis) from 9 C inputs
    # at every pixel of x [..., H, W, C]: the pooled ones convolve every
    # pixel too.
    total += 2.0 * math.prod(x_shape) * 9 * out_shape[-1]
  return total
