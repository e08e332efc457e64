"""Meta-SGD, Reptile and fast ANIL: gradients, closed forms and learning."""

import chex
import jax
import jax.numpy as jnp
import jax.test_util as jtu
import numpy as np
import optax
import pytest

import metalearn as ml
from metalearn import algorithms
from metalearn import core
from metalearn import objectives
from metalearn import reptile
from metalearn import rules
from metalearn import step as step_lib
from metalearn.data import sinusoid
from metalearn.models import conv4
from metalearn.models import mlp
from tests import helpers


def test_table_sets_what_each_algorithm_is():
  table = algorithms.ALGORITHMS
  assert table["metasgd"].per_element_lrs and table["metasgd"].learn_inner_lrs
  assert not table["metasgd"].first_order
  assert table["reptile"].outer is reptile.REPTILE
  assert not table["reptile"].learn_inner_lrs
  assert dict(table["reptile"].defaults)["inner_optimizer"] == "adam"
  assert table["anil"].head_only and not table["anil"].per_step_bn
  assert all(isinstance(a.outer, rules.OuterRule) for a in table.values())
  assert not any(a.learn_inner_lrs and not a.outer.learns_inner_lrs
                 for a in table.values())
  assert [algorithms.from_flags(f, p).name for f in (False, True)
          for p in (False, True)] == ["maml", "mamlpp", "fomaml",
                                      "mamlpp_first_order"]
  # Progress names a derivative order only where the meta-gradient can
  # flow through an inner loop.
  assert {n for n, a in table.items() if not a.differentiates_inner_loop
         } == {"protonet", "imaml", "reptile"}


def test_metasgd_grad_matches_finite_differences():
  # Per-element learned rates, two inner steps, second order: the gradient
  # in the parameters and in every rate element against central differences.
  model = helpers.tiny_model()
  with jax.enable_x64(True):
    params = helpers.to_f64(model.init(jax.random.key(0)))
    lrs = helpers.to_f64(ml.fixed_inner_lrs(params, 0.3, 2, per_element=True))
    lrs = jax.tree.map(
        lambda a: a * jax.random.uniform(jax.random.key(2), a.shape,
                                         jnp.float64, 0.5, 1.5), lrs)
    tasks = helpers.to_f64(helpers.tiny_tasks(jax.random.key(1)))
    loss = jax.jit(lambda p, a: ml.meta_loss(model.apply, p, a, tasks,
                                             None)[0])
    jtu.check_grads(loss, (params, lrs), order=1, modes=("rev",), eps=1e-5,
                    atol=1e-6, rtol=1e-6)


def test_regression_meta_grad_matches_finite_differences():
  model = mlp(1, input_shape=(1,), hidden=(8,), activation="relu")
  with jax.enable_x64(True):
    params = helpers.to_f64(model.init(jax.random.key(0)))
    lrs = helpers.to_f64(ml.fixed_inner_lrs(params, 0.01, 2))
    tasks = helpers.to_f64(sinusoid.sample_tasks(
        jax.random.key(1), batch_size=3, k_shot=5, n_query=5))
    loss = jax.jit(lambda p: core.meta_loss(
        model.apply, p, lrs, tasks, None, objective=objectives.REGRESSION)[0])
    jtu.check_grads(loss, (params,), order=1, modes=("rev",), eps=1e-5,
                    atol=1e-6, rtol=1e-6)
    _, metrics = core.meta_loss(model.apply, params, lrs, tasks, None,
                                objective=objectives.REGRESSION)
    assert metrics.accuracy is None


def _one_task_union(tasks):
  return reptile.training_task(helpers.first_task(tasks))


def test_reptile_one_sgd_step_is_the_scaled_gradient():
  # One SGD step: adapted = p - lr * g, so p - adapted = lr * g with g the
  # gradient of the loss on all of the task's examples.
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.5, 1)
  tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=1)
  union = _one_task_union(tasks)
  grad = jax.grad(lambda p: ml.cross_entropy(model.apply(p, union.support_x),
                                             union.support_y))(params)
  move, _, metrics = jax.jit(lambda p: reptile.direction(
      model.apply, p, lrs, tasks))(params)
  chex.assert_trees_all_close(move, jax.tree.map(lambda g: 0.5 * g, grad),
                              rtol=1e-5, atol=1e-7)
  assert metrics.loss.shape == (1, 1)


def test_reptile_adam_matches_a_python_loop_and_averages_tasks():
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.1, 3, frozen=("dense0",))
  tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=2)
  adapted = []
  for t in range(2):
    union = reptile.training_task(jax.tree.map(lambda x: x[t], tasks))
    p, opt = params, optax.adam(0.01, b1=0.0)
    state = opt.init(p)
    for _ in range(3):
      g = jax.grad(lambda q: ml.cross_entropy(model.apply(q, union.support_x),
                                              union.support_y))(p)
      g = {**g, "dense0": jax.tree.map(jnp.zeros_like, g["dense0"])}
      updates, state = opt.update(g, state, p)
      p = optax.apply_updates(p, updates)
    adapted.append(p)
  expected = jax.tree.map(lambda p0, a, b: p0 - (a + b) / 2, params, *adapted)
  move, _, _ = reptile.direction(model.apply, params, lrs, tasks,
                                 inner=rules.adam(0.01))
  chex.assert_trees_all_close(move, expected, rtol=1e-4, atol=1e-6)
  assert all(float(jnp.max(jnp.abs(x))) == 0.0
             for x in jax.tree.leaves(move["dense0"]))


def test_reptile_sgd_outer_step_interpolates():
  # SGD at rate eps on the move: new = p + eps * (mean adapted - p).
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.3, 2)
  tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=3)
  step = step_lib.make_meta_step(model.apply, optax.sgd(0.25),
                                 lambda key, data: data, None,
                                 outer=reptile.REPTILE, donate=False)
  state = step_lib.init_meta_state(params, lrs, optax.sgd(0.25),
                                   learn_inner_lrs=False)
  new, _ = step(state, tasks, jax.random.key(0))
  move, _, _ = reptile.direction(model.apply, params, lrs, tasks)
  chex.assert_trees_all_close(
      new.meta.params, jax.tree.map(lambda p, m: p - 0.25 * m, params, move),
      rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="learn_inner_lrs"):
    step_lib.make_meta_step(model.apply, optax.sgd(0.1), lambda k, d: d,
                            None, outer=reptile.REPTILE,
                            learn_inner_lrs=True)


@pytest.mark.parametrize("first_order", [False, True])
def test_fast_anil_equals_adapting_through_the_body(first_order):
  model = conv4(3, input_shape=(12, 12, 1), filters=4, num_blocks=2,
                conv_impl="xla")
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.4, 2,
                           frozen=tuple(f"['{k}']" for k in params
                                        if k != "head"))
  images = jax.random.bernoulli(jax.random.key(1), 0.3, (6, 4, 12, 12))
  tasks = ml.data.episodes.sample_tasks(
      jax.random.key(2), images.astype(jnp.uint8), n_way=3, k_shot=1,
      n_query=2, batch_size=2)
  split = core.BodyHead(model.body, model.head)

  def loss(body_head):
    return jax.jit(jax.value_and_grad(lambda p: core.meta_loss(
        model.apply, p, lrs, tasks, jnp.array([0.3, 0.7]),
        first_order=first_order, body_head=body_head)[0]))(params)

  through, g_through = loss(None)
  fast, g_fast = loss(split)
  np.testing.assert_allclose(fast, through, rtol=1e-5)
  chex.assert_trees_all_close(g_fast, g_through, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="adapts a body parameter"):
    core.meta_loss(model.apply, params, ml.fixed_inner_lrs(params, 0.4, 2),
                   tasks, None, body_head=split)


def _post_adaptation_mse(model, meta, tasks, inner_steps):
  result = ml.evaluate.evaluate(model.apply, meta.params, meta.inner_lrs, tasks,
                                inner_steps=inner_steps,
                                objective=objectives.REGRESSION)
  assert result.accuracy is None
  return result.loss


@pytest.mark.parametrize("name", ["metasgd", "reptile", "anil"])
def test_algorithm_learns_sine_regression(name):
  # 300 meta-steps on sine waves: after adapting to a new wave the query MSE
  # must fall well below what the untrained initialisation reaches with the
  # same inner steps. Meta-SGD takes its paper's one step (five steps of
  # freely learned per-element rates overshoot).
  algorithm = algorithms.get(name)
  inner_steps = 1 if algorithm.per_element_lrs else 5
  model = mlp(1, input_shape=(1,), hidden=(40, 40), activation="relu")
  params = model.init(jax.random.key(0))
  frozen = ("dense",) if algorithm.head_only else ()
  lrs = ml.fixed_inner_lrs(params, 0.01, inner_steps,
                           per_element=algorithm.per_element_lrs,
                           frozen=frozen)
  optimizer = (optax.sgd(optax.linear_schedule(1.0, 0.0, 300))
               if algorithm.outer is reptile.REPTILE else optax.adam(1e-3))
  body_head = None
  if algorithm.head_only:
    body_head = core.BodyHead(model.body, model.head)
  step = step_lib.make_meta_step(
      model.apply, optimizer,
      lambda key, _: sinusoid.sample_tasks(key, batch_size=10, k_shot=10,
                                           n_query=10),
      None, first_order=algorithm.first_order,
      learn_inner_lrs=algorithm.learn_inner_lrs, outer=algorithm.outer,
      objective=objectives.REGRESSION, body_head=body_head,
      inner=(rules.adam(0.01) if algorithm.outer is reptile.REPTILE
             else None), steps_per_call=100)
  state = step_lib.init_meta_state(params, lrs, optimizer,
                                   learn_inner_lrs=algorithm.learn_inner_lrs)
  test = sinusoid.fixed_tasks(7, num_tasks=100, k_shot=10, n_query=10)
  before = _post_adaptation_mse(model, state.meta, test, inner_steps)
  for _ in range(3):
    state, _ = step(state, jnp.zeros(()), jax.random.key(3))
  after = _post_adaptation_mse(model, state.meta, test, inner_steps)
  assert after < 0.5 * before, (name, before, after)
