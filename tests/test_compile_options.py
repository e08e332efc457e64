"""metalearn's programs compile with its CPU options
(metalearn.compilation_cache.compile_options): the meta-step and the
evaluation programs alike."""

import jax
import jax.numpy as jnp
import optax
import pytest

import metalearn as ml
from metalearn import compilation_cache
from tests import helpers

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu",
                                reason="the options are CPU options")

# An option value XLA refuses: a program compiled with it fails, which shows
# that the options reach the compiler.
_REFUSED = {"xla_backend_optimization_level": "fastest"}


def test_the_cpu_options_are_the_default_unless_xla_flags_set_the_level(
    monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  assert compilation_cache.compile_options() == compilation_cache.CPU_COMPILE
  # This suite's own flags (tests/xla_flags.py) set level 0: they win.
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
  assert compilation_cache.compile_options() is None
  twice = compilation_cache.jit(lambda x: 2 * x)
  assert float(twice(jnp.float32(3.0))) == 6.0
  assert "multiply" in twice.lower(jnp.float32(3.0)).as_text()


def test_they_reach_the_meta_step_and_the_decorated_programs(monkeypatch):
  # Decorated before the options change (as evaluate's programs are, at
  # import): the options are looked up when it first compiles.
  decorated = compilation_cache.jit(lambda x: 2 * x)
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setattr(compilation_cache, "CPU_COMPILE", _REFUSED)
  with pytest.raises(Exception, match="xla_backend_optimization_level"):
    decorated(jnp.float32(3.0))
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.4, 1)
  tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=4)
  opt = optax.sgd(1e-2)
  state = ml.init_meta_state(params, lrs, opt, learn_inner_lrs=False)
  step = ml.make_meta_step(model.apply, opt, lambda key, data: data, None)
  with pytest.raises(Exception, match="xla_backend_optimization_level"):
    step.lower(state, tasks, jax.random.key(2)).compile()
  monkeypatch.undo()
  step = ml.make_meta_step(model.apply, opt, lambda key, data: data, None)
  state, out = step(state, tasks, jax.random.key(2))
  assert jnp.isfinite(out.loss)
