"""Test-wide settings: broadcasting bugs fail loudly, CPU only."""

import fcntl
import os

from tests import xla_flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Fast compiles, slow runs: see tests/xla_flags.py.
os.environ["XLA_FLAGS"] = xla_flags.with_fast_compile(
    os.environ.get("XLA_FLAGS", ""))

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_numpy_rank_promotion", "raise")
# Identical programs built by different tests compile once: CPU compile time
# dominates this suite.
jax.config.update("jax_compilation_cache_dir",
                  os.environ.get("METALEARN_TEST_JAX_CACHE",
                                 "/tmp/metalearn-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order


@pytest.fixture(scope="session")
def omniglot_cache_dir(tmp_path_factory):
  """The project's Omniglot cache, built once from ../shared if missing.

  Test workers (pytest-xdist) share it: the first to get the lock builds
  it, the others then find it verified.
  """
  from metalearn.data import omniglot  # pylint: disable=g-import-not-at-top
  lock = tmp_path_factory.getbasetemp().parent / "omniglot-cache.lock"
  with open(lock, "w") as held:
    fcntl.flock(held, fcntl.LOCK_EX)
    return omniglot.ensure_cache()
