"""Compiling: JAX's persistent compilation cache, where metalearn keeps it,
and XLA options that trade run time for compile time.

Compiled programs are written to ``$METALEARN_JAX_CACHE_DIR`` (default
``~/.cache/metalearn/jax``), so a second run of the same command, or a
worker process of the comparison, loads them instead of compiling.
"""

import os
from pathlib import Path
from typing import Optional

import jax

JAX_CACHE_DIR_ENV = "METALEARN_JAX_CACHE_DIR"

# The option that sets LLVM's optimisation level for the kernels XLA
# generates on a CPU (XLA's default: 3). Level 1 compiled the comparison's
# meta-steps 8 to 13% faster at the same speed, but ran a small preset with
# XLA's convolutions 37% slower and Conv-4-8 with the C++ ones 5 to 9%
# slower (docs/benchmarks.md, "LLVM's level for the steps of small
# models"): a config's ``cpu_llvm_level`` picks it per run.
LLVM_LEVEL = "xla_backend_optimization_level"
# LLVM at level 1 (the benchmark's ``o1`` knob).
LLVM_LEVEL_1 = {LLVM_LEVEL: 1}

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


def compile_options(cpu_llvm_level: Optional[int] = None
                   ) -> Optional[dict]:
  """The XLA options a metalearn program compiles with: on a CPU with
  ``cpu_llvm_level``, LLVM's optimisation level for XLA's kernels; None
  (XLA's defaults) on other backends, without a level, or where
  ``$XLA_FLAGS`` sets one (the flags win)."""
  if (cpu_llvm_level is None or jax.default_backend() != "cpu"
      or LLVM_LEVEL in os.environ.get("XLA_FLAGS", "")):
    return None
  return {LLVM_LEVEL: cpu_llvm_level}
