"""Compiling: JAX's persistent compilation cache, where metalearn keeps it,
and XLA options that trade run time for compile time.

Compiled programs are written to ``$METALEARN_JAX_CACHE_DIR`` (default
``~/.cache/metalearn/jax``), so a second run of the same command, or a
worker process of the comparison, loads them instead of compiling.
"""

import functools
import os
from pathlib import Path
from typing import Callable, Optional

import jax

JAX_CACHE_DIR_ENV = "METALEARN_JAX_CACHE_DIR"

# What metalearn compiles its programs with on a CPU: LLVM's optimisation
# level 1 for the kernels XLA generates, where XLA's default is 3. The heavy
# work of a meta-step is in custom calls and library calls that it does not
# touch; the generated elementwise kernels ran as fast, and the comparison's
# meta-steps compiled 8 to 13% faster (docs/benchmarks.md, "The first layer
# in the cache, batch norm from the input, fewer copies").
CPU_COMPILE = {"xla_backend_optimization_level": 1}
# XLA's own default, for measuring against (the benchmark's ``o3`` knob).
XLA_DEFAULT_LLVM = {"xla_backend_optimization_level": 3}

# XLA's CPU backend with its older fusion emitters (``experiments/
# benchmark.py``'s ``oldfusion`` knob measures compile and run time).
OLD_CPU_FUSION = {"xla_cpu_use_fusion_emitters": False}
# ... and without LLVM's optimisation passes: a meta-step compiles several
# times faster, and may run slower (the ``fastcc`` knob).
FAST_CPU_COMPILE = {"xla_backend_optimization_level": 0, **OLD_CPU_FUSION}
# XLA's CPU preset that trades run time for compile time (the ``fcpreset``
# knob).
FAST_COMPILE_PRESET = {"xla_cpu_opt_preset": "CPU_OPT_PRESET_FAST_COMPILE"}
# ... and XLA's CPU backend handing elementwise ops and reductions to the
# YNNPACK library, not only matmuls, so that fewer kernels go through LLVM
# (the ``ynnew`` knob).
YNN_ELEMENTWISE = {"xla_cpu_experimental_ynn_fusion_type": ",".join(
    "LIBRARY_FUSION_TYPE_" + kind for kind in ("DOT", "ELTWISE", "REDUCE"))}


def default_dir() -> Path:
  path = os.environ.get(JAX_CACHE_DIR_ENV)
  return Path(path) if path else Path.home() / ".cache" / "metalearn" / "jax"


def enable(path: Optional[str | os.PathLike] = None) -> Path:
  """Turns the cache on in ``path`` (default :func:`default_dir`); every
  compiled program is kept, however fast it compiled."""
  path = Path(path) if path else default_dir()
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


def current() -> Optional[str]:
  """The cache dir in use in this process, or None."""
  return jax.config.jax_compilation_cache_dir or None


def compile_options() -> Optional[dict]:
  """The options metalearn's programs compile with on the backend in use:
  :data:`CPU_COMPILE` on a CPU, else None (XLA's defaults). An optimisation
  level set in ``$XLA_FLAGS`` wins: None then too."""
  if jax.default_backend() != "cpu" or any(
      key in os.environ.get("XLA_FLAGS", "") for key in CPU_COMPILE):
    return None
  return dict(CPU_COMPILE)


def jit(fun: Callable, **kwargs) -> Callable:
  """``jax.jit(fun, **kwargs)`` compiled with :func:`compile_options`, which
  are looked up at the first call or ``lower`` (importing a module that
  decorates with it starts no backend)."""
  jitted = []

  def get():
    if not jitted:
      jitted.append(jax.jit(fun, compiler_options=compile_options(),
                            **kwargs))
    return jitted[0]

  @functools.wraps(fun)
  def call(*args, **kw):
    return get()(*args, **kw)
  call.lower = lambda *args, **kw: get().lower(*args, **kw)
  return call
