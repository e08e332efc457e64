"""The meta-step compiles with the config's LLVM level on a CPU
(metalearn.compilation_cache.compile_options); $XLA_FLAGS win."""

import jax
import jax.numpy as jnp
import optax
import pytest

import metalearn as ml
from metalearn import build
from metalearn import compilation_cache
from metalearn import config_checks
from metalearn import configs
from metalearn.presets import compare as compare_configs
from tests import helpers

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu",
                                reason="the options are CPU options")

# An option value XLA refuses: a program compiled with it fails, which shows
# that the options reach the compiler.
_REFUSED = "fastest"


def test_the_level_is_an_option_unless_xla_flags_set_it(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  assert compilation_cache.compile_options() is None  # XLA's defaults.
  assert compilation_cache.compile_options(1) == compilation_cache.LLVM_LEVEL_1
  # This suite's own flags (tests/xla_flags.py) set level 0: they win.
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
  assert compilation_cache.compile_options(1) is None


def test_the_config_level_reaches_the_meta_step(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.4, 1)
  tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=4)
  opt = optax.sgd(1e-2)
  state = ml.init_meta_state(params, lrs, opt, learn_inner_lrs=False)
  make = lambda level: ml.make_meta_step(
      model.apply, opt, lambda key, data: data, None, cpu_llvm_level=level)
  with pytest.raises(Exception, match="xla_backend_optimization_level"):
    make(_REFUSED).lower(state, tasks, jax.random.key(2)).compile()
  state, out = make(1)(state, tasks, jax.random.key(2))
  assert jnp.isfinite(out.loss)


def test_xla_default_except_the_cpu_comparison_and_bad_levels_refused():
  assert configs.for_algorithm("maml").cpu_llvm_level == 3
  assert compare_configs.cpu().cpu_llvm_level == 1
  assert compare_configs.full().cpu_llvm_level == 3
  for bad in (4, -1):  # ConfigDict itself refuses other types.
    config = configs.for_algorithm("maml")
    config.cpu_llvm_level = bad
    with pytest.raises(ValueError, match=r"cpu_llvm_level=.* from 0 to 3"):
      config_checks.validate_config(config)
