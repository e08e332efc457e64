"""The im2col windows as one C++ loop, an XLA FFI custom call on a CPU; and
the builder of the library that holds it and the direct convolution
(:mod:`metalearn.models.native_conv`).

XLA's CPU backend builds :func:`metalearn.models.im2col.windows` (the nine
shifted windows of a padded image stacked on the channel axis) as eight
pad-and-slice kernels and a concatenation: each window is written and read
twice, and every call is nine kernels for LLVM to compile. The C++ kernel
(``native_windows.cc``) writes each output element once, and is one custom
call. Measured: docs/benchmarks.md ("The im2col windows as one C++ loop").

The kernels are compiled on first use with the system's C++ compiler
(``$CXX``, else ``c++``) against the XLA FFI headers that jaxlib ships, for
this machine's instruction set (``-march=native`` on x86-64), into
``$METALEARN_NATIVE_DIR`` (default ``~/.cache/metalearn/native``), one
library per source, jax version, compiler and processor. Without a compiler
:func:`unavailable_reason` says why, and ``conv_impl="auto"`` keeps XLA's
windows (``im2col_vjp``).
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import jax

from metalearn.types import Array

NATIVE_DIR_ENV = "METALEARN_NATIVE_DIR"
TARGET = "metalearn_windows"
TAP_MAJOR_TARGET = "metalearn_tap_major_windows"
CONV_TARGET = "metalearn_conv"
CONV_KERNEL_GRAD_TARGET = "metalearn_conv_kernel_grad"
CONV_POOL_TARGET = "metalearn_conv_pool"
CONV_TAKE_TARGET = "metalearn_conv_take"
CONV_KERNEL_GRAD_PUT_TARGET = "metalearn_conv_kernel_grad_put"
_SOURCES = (Path(__file__).with_name("native_windows.cc"),
            Path(__file__).with_name("native_conv.cc"))
_X86 = platform.machine().lower() in ("x86_64", "amd64")
_FLAGS = ("-O3", "-shared", "-fPIC", "-std=c++17", "-w") + (
    ("-march=native",) if _X86 else ())


def _compiler() -> Optional[str]:
  return shutil.which(os.environ.get("CXX", "c++"))


def _default_dir() -> Path:
  path = os.environ.get(NATIVE_DIR_ENV)
  return Path(path) if path else Path.home() / ".cache" / "metalearn" / "native"


def _processor() -> bytes:
  """What ``-march=native`` compiles for: the CPU's model and flags (a
  cache shared by different machines keeps one library for each)."""
  try:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return platform.processor().encode()
  return "\n".join(sorted({l for l in lines if l.startswith(
      ("model name", "flags", "Features"))})).encode()


def _library_path(compiler: str) -> Path:
  """Where the library for these sources, jax version, compiler and
  processor lives."""
  key = hashlib.sha256(b"\0".join([
      *(s.read_bytes() for s in _SOURCES), jax.__version__.encode(),
      compiler.encode(), " ".join(_FLAGS).encode(),
      _processor()])).hexdigest()[:16]
  return _default_dir() / f"windows-{key}.so"


def _build(compiler: str, path: Path) -> None:
  """Compiles the kernel to ``path``, atomically (parallel test workers may
  build it at once). Raises OSError or CalledProcessError."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
    out = Path(tmp) / path.name
    subprocess.run([compiler, *_FLAGS, f"-I{jax.ffi.include_dir()}",
                    *map(str, _SOURCES), "-o", str(out)],
                   check=True, capture_output=True, text=True)
    os.replace(out, path)


@functools.cache
def unavailable_reason() -> Optional[str]:
  """Builds (once), loads and registers the kernel. Returns None when it is
  ready, else why not, in words."""
  compiler = _compiler()
  if compiler is None:
    return f"no C++ compiler ({os.environ.get('CXX', 'c++')}) on PATH"
  if not hasattr(jax, "ffi"):
    return f"jax {jax.__version__} has no jax.ffi"
  path = _library_path(compiler)
  try:
    if not path.exists():
      _build(compiler, path)
    library = ctypes.cdll.LoadLibrary(str(path))
    handlers = {TARGET: library.MetalearnWindows,
                TAP_MAJOR_TARGET: library.MetalearnTapMajorWindows,
                CONV_TARGET: library.MetalearnConv,
                CONV_KERNEL_GRAD_TARGET: library.MetalearnConvKernelGrad,
                CONV_POOL_TARGET: library.MetalearnConvPool,
                CONV_TAKE_TARGET: library.MetalearnConvTake,
                CONV_KERNEL_GRAD_PUT_TARGET: library.MetalearnConvKernelGradPut}
  except subprocess.CalledProcessError as e:
    return f"{compiler} failed: {e.stderr.strip()[-500:]}"
  except (OSError, AttributeError) as e:
    return f"building or loading {path} failed: {e}"
  for target, handler in handlers.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler),
                                platform="cpu")
  return None


def available() -> bool:
  """Whether :func:`windows` can run here (builds the kernel on first call)."""
  return unavailable_reason() is None


def _check(x: Array) -> None:
  if x.ndim < 3:
    raise ValueError(f"windows needs x [..., H, W, C]; got shape {x.shape}.")
  reason = unavailable_reason()
  if reason:
    raise RuntimeError(f"the native windows kernel is unavailable: {reason}")


def windows(x: Array) -> Array:
  """:func:`metalearn.models.im2col.windows` on a CPU: x [..., H, W, C] ->
  [..., H, W, 9 C], the same values, any dtype.

  Raises:
    ValueError: ``x`` of rank < 3.
    RuntimeError: the kernel cannot be built here (the reason).
  """
  _check(x)
  out = jax.ShapeDtypeStruct((*x.shape[:-1], 9 * x.shape[-1]), x.dtype)
  # Leading axes are images to the kernel, so vmap adds one more.
  return jax.ffi.ffi_call(TARGET, out, vmap_method="expand_dims")(x)


def tap_major_windows(x: Array) -> Array:
  """:func:`windows` with the 9 C axis first: x [..., H, W, C] ->
  [9 C, ..., H, W], ``moveaxis(windows(x), -1, 0)``. The kernel gradient's
  matmul reads this layout; XLA would otherwise transpose the windows into
  it with one more copy.

  Raises:
    ValueError: ``x`` of rank < 3.
    RuntimeError: the kernel cannot be built here (the reason).
  """
  _check(x)
  out = jax.ShapeDtypeStruct((9 * x.shape[-1], *x.shape[:-1]), x.dtype)
  # vmap adds leading axes to x and to the result; they stay in front of
  # the 9 C axis, and ``inner_rank`` (fixed here) tells the kernel which
  # of x's leading axes follow it.
  return jax.ffi.ffi_call(TAP_MAJOR_TARGET, out, vmap_method="expand_dims")(
      x, inner_rank=x.ndim - 3)
