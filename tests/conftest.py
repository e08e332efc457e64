"""Test-wide settings: broadcasting bugs fail loudly, CPU only."""

import fcntl
import os
import subprocess
import sys
import threading

from tests import xla_flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Fast compiles, slow runs: see tests/xla_flags.py.
os.environ["XLA_FLAGS"] = xla_flags.with_fast_compile(
    os.environ.get("XLA_FLAGS", ""))

import jax  # pylint: disable=g-import-not-at-top

from metalearn import host_memory  # pylint: disable=g-import-not-at-top

# xdist's workers, the binaries and notebook kernels start with glibc's huge
# pages for XLA's scratch (metalearn.host_memory), as the binaries would.
os.environ.update(host_memory.env_with_huge_pages())

jax.config.update("jax_numpy_rank_promotion", "raise")
# Identical programs built by different tests compile once: CPU compile time
# dominates this suite.
jax.config.update("jax_compilation_cache_dir",
                  os.environ.get("METALEARN_TEST_JAX_CACHE",
                                 "/tmp/metalearn-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order


# The modules that take longest, first (see --durations): two workers then
# end together instead of one finishing a long module alone. The first
# needs no Omniglot, so its worker is busy while the cache is built.
LONGEST_FIRST = ("test_distributed", "test_notebooks", "test_train",
                 "test_compare", "test_faults", "test_omniglot_folders",
                 "test_data_sources")
_CACHE_LOCK = "omniglot-cache.lock"
_BUILD = ("from metalearn.data import omniglot; omniglot.ensure_cache()")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  def module_rank(item):
    module = getattr(item, "module", None)
    name = module.__name__.rsplit(".", 1)[-1] if module else ""
    return rank.get(name, len(rank))
  items.sort(key=module_rank)  # stable: each module keeps its order


def pytest_sessionstart(session):
  """With test workers, the controller builds the Omniglot cache in a child
  process while the workers start on tests that do not need it; the
  workers' fixture waits on the lock this holds until the build ends."""
  config = session.config
  if hasattr(config, "workerinput") or not config.getoption(
      "numprocesses", None):
    return
  lock = open(config._tmp_path_factory.getbasetemp() / _CACHE_LOCK, "w")  # pylint: disable=protected-access
  fcntl.flock(lock, fcntl.LOCK_EX)
  child = subprocess.Popen([sys.executable, "-c", _BUILD],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

  def release():
    child.wait()  # a failed build is retried, and reported, by the fixture
    lock.close()
  config._omniglot_build = threading.Thread(target=release, daemon=True)  # pylint: disable=protected-access
  config._omniglot_build.start()  # pylint: disable=protected-access


@pytest.fixture(scope="session")
def omniglot_cache_dir(tmp_path_factory):
  """The project's Omniglot cache, built once from ../shared if missing.

  Test workers (pytest-xdist) share it: the controller's build, or else
  the first worker to get the lock, builds it; the others then find it
  verified.
  """
  from metalearn.data import omniglot  # pylint: disable=g-import-not-at-top
  lock = tmp_path_factory.getbasetemp().parent / _CACHE_LOCK
  with open(lock, "w") as held:
    fcntl.flock(held, fcntl.LOCK_EX)
    return omniglot.ensure_cache()
