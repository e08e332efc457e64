"""Gradient, equivalence and validation tests of the one code path."""

from absl.testing import parameterized
import chex
import jax
from jax import test_util as jtu
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metalearn as ml
from metalearn import schedules
from tests import helpers


def reference_inner_loop(apply_fn, params, lr, task, inner_steps):
  """Plain Python SGD loop, independent of scan: per-step query losses."""
  losses = []
  for _ in range(inner_steps):
    grads = jax.grad(lambda p: ml.cross_entropy(apply_fn(p, task.support_x),
                                                task.support_y))(params)
    params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    losses.append(ml.cross_entropy(apply_fn(params, task.query_x),
                                   task.query_y))
  return params, jnp.stack(losses)


class MetaGradientTest(parameterized.TestCase):

  @parameterized.parameters((1, True), (3, True), (1, False), (3, False))
  def test_maml_grad_matches_finite_differences(self, inner_steps, weighted):
    # weighted: a multi-step loss; else step_weights=None (the last step's
    # query loss alone, the query set run once).
    model = helpers.tiny_model()
    with jax.enable_x64(True):
      params = helpers.to_f64(model.init(jax.random.key(0)))
      lrs = helpers.to_f64(ml.fixed_inner_lrs(params, 0.3, inner_steps))
      tasks = helpers.to_f64(helpers.tiny_tasks(jax.random.key(1)))
      weights = jnp.linspace(0.5, 1.0, inner_steps) if weighted else None

      @jax.jit  # one compile instead of many small eager ones
      def loss(p, a):
        return ml.meta_loss(model.apply, p, a, tasks, weights)[0]

      # Checks d/dparams and d/dinner_lrs together against central finite
      # differences along random directions.
      jtu.check_grads(loss, (params, lrs), order=1, modes=("rev",),
                      eps=1e-5, atol=1e-6, rtol=1e-6)

  def test_fomaml_grad_is_query_grad_at_adapted_params(self):
    model = helpers.tiny_model()
    params = model.init(jax.random.key(0))
    lrs = ml.fixed_inner_lrs(params, 0.5, 2)
    tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=1)
    task = helpers.first_task(tasks)
    weights = ml.last_step_weights(2)
    adapted, _ = ml.adapt(model.apply, params, lrs, task, first_order=True)
    expected = jax.grad(lambda p: ml.cross_entropy(
        model.apply(p, task.query_x), task.query_y))(adapted)

    def grad(first_order):
      return jax.grad(lambda p: ml.meta_loss(
          model.apply, p, lrs, tasks, weights, first_order=first_order)[0])(
              params)

    chex.assert_trees_all_close(grad(True), expected, rtol=1e-5, atol=1e-6)
    second = grad(False)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(second), jax.tree.leaves(expected)))
    self.assertGreater(diff, 1e-3)

  def test_first_order_lr_grad_matches_closed_form(self):
    # One step: adapted = p - a * g_s with g_s held constant, so
    # dL/da = -<grad_q(adapted), g_s> per tensor.
    model = helpers.tiny_model()
    params = model.init(jax.random.key(0))
    lrs = ml.fixed_inner_lrs(params, 0.5, 1)
    tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=1)
    task = helpers.first_task(tasks)

    @jax.jit
    def closed_form(params):
      g_s = jax.grad(lambda p: ml.cross_entropy(
          model.apply(p, task.support_x), task.support_y))(params)
      adapted, _ = ml.adapt(model.apply, params, lrs, task)
      g_q = jax.grad(lambda p: ml.cross_entropy(
          model.apply(p, task.query_x), task.query_y))(adapted)
      return jax.tree.map(lambda q, s: -jnp.sum(q * s)[None], g_q, g_s)

    expected = closed_form(params)
    grad = jax.jit(jax.grad(lambda a, w: ml.meta_loss(
        model.apply, params, a, tasks, w, first_order=True)[0]))
    for weights in (ml.last_step_weights(1), None):
      got = grad(lrs, weights)
      chex.assert_trees_all_close(got, expected, rtol=1e-4, atol=1e-7)


class EquivalenceTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.model = helpers.tiny_model()
    self.params = self.model.init(jax.random.key(0))
    self.tasks = helpers.tiny_tasks(jax.random.key(1))

  def test_scan_matches_python_loop(self):
    lrs = ml.fixed_inner_lrs(self.params, 0.4, 3)
    task = helpers.first_task(self.tasks)
    adapted, metrics = ml.adapt(self.model.apply, self.params, lrs, task)
    ref_params, ref_losses = reference_inner_loop(
        self.model.apply, self.params, 0.4, task, 3)
    chex.assert_trees_all_close(adapted, ref_params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics.loss, ref_losses, rtol=1e-5)
    chex.assert_shape([metrics.loss, metrics.accuracy], (3,))

  def test_one_hot_weights_equal_plain_maml(self):
    lrs = ml.fixed_inner_lrs(self.params, 0.4, 3)
    loss, _ = ml.meta_loss(self.model.apply, self.params, lrs, self.tasks,
                           ml.last_step_weights(3))
    plain = jnp.mean(jnp.stack([
        reference_inner_loop(self.model.apply, self.params, 0.4, t, 3)[1][-1]
        for t in _unstack(self.tasks)]))
    np.testing.assert_allclose(loss, plain, rtol=1e-5)

  def test_weighted_steps_equal_hand_computed_sum(self):
    lrs = ml.fixed_inner_lrs(self.params, 0.4, 3)
    weights = jnp.array([0.2, 0.3, 0.5])
    loss, _ = ml.meta_loss(self.model.apply, self.params, lrs, self.tasks,
                           weights)
    per_task = [reference_inner_loop(self.model.apply, self.params, 0.4, t, 3)
                [1] for t in _unstack(self.tasks)]
    expected = np.mean([0.2 * l[0] + 0.3 * l[1] + 0.5 * l[2]
                        for l in per_task])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)

  @parameterized.parameters(False, True)
  def test_vmap_matches_loop_over_tasks(self, first_order):
    lrs = ml.fixed_inner_lrs(self.params, 0.4, 2)
    weights = jnp.array([0.4, 0.6])

    def batched(p):
      return ml.meta_loss(self.model.apply, p, lrs, self.tasks, weights,
                          first_order=first_order)

    def single(p, task):
      _, metrics = ml.adapt(self.model.apply, p, lrs, task,
                            first_order=first_order)
      return metrics.loss @ weights, metrics

    (loss, metrics), grads = jax.value_and_grad(batched, has_aux=True)(
        self.params)
    looped = [jax.value_and_grad(single, has_aux=True)(self.params, t)
              for t in _unstack(self.tasks)]
    np.testing.assert_allclose(loss, np.mean([l[0][0] for l in looped]),
                               rtol=1e-5)
    np.testing.assert_allclose(
        metrics.loss, np.stack([l[0][1].loss for l in looped]), rtol=1e-5)
    mean_grads = jax.tree.map(lambda *g: sum(g) / len(g),
                              *[l[1] for l in looped])
    chex.assert_trees_all_close(grads, mean_grads, rtol=1e-4, atol=1e-6)

  def test_per_element_equal_rates_match_per_tensor(self):
    per_tensor = ml.fixed_inner_lrs(self.params, 0.3, 2)
    per_element = ml.fixed_inner_lrs(self.params, 0.3, 2, per_element=True)
    chex.assert_shape(per_element["head"]["kernel"],
                      (2, *self.params["head"]["kernel"].shape))
    weights = ml.last_step_weights(2)
    run = lambda lrs: jax.value_and_grad(
        lambda p: ml.meta_loss(self.model.apply, p, lrs, self.tasks,
                               weights)[0])(self.params)
    chex.assert_trees_all_close(run(per_tensor), run(per_element), rtol=1e-6)

  def test_frozen_leaves_do_not_adapt(self):
    lrs = ml.fixed_inner_lrs(self.params, 0.4, 2, frozen=["dense0"])
    self.assertIsNone(lrs["dense0"]["kernel"])
    adapted, _ = ml.adapt(self.model.apply, self.params, lrs,
                          helpers.first_task(self.tasks))
    chex.assert_trees_all_equal(adapted["dense0"], self.params["dense0"])
    self.assertFalse(np.allclose(adapted["head"]["kernel"],
                                 self.params["head"]["kernel"]))

  def test_remat_and_unroll_do_not_change_the_gradient(self):
    lrs = ml.fixed_inner_lrs(self.params, 0.4, 3)
    weights = ml.msl_weights(3, 1.0, 5)
    run = lambda **kw: jax.grad(lambda p: ml.meta_loss(
        self.model.apply, p, lrs, self.tasks, weights, **kw)[0])(self.params)
    base = run()
    chex.assert_trees_all_close(run(remat=True), base, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(run(unroll=True), base, rtol=1e-5, atol=1e-7)


class FinalQueryOnlyTest(parameterized.TestCase):
  """``step_weights=None`` must equal one-hot last-step weights exactly."""

  def setUp(self):
    super().setUp()
    self.model = helpers.tiny_model()
    self.params = self.model.init(jax.random.key(0))
    self.lrs = ml.fixed_inner_lrs(self.params, 0.4, 3)
    self.tasks = helpers.tiny_tasks(jax.random.key(1))

  def value_and_grads(self, weights, **kw):
    return jax.value_and_grad(
        lambda p, a: ml.meta_loss(self.model.apply, p, a, self.tasks,
                                  weights, **kw),
        argnums=(0, 1), has_aux=True)(self.params, self.lrs)

  @parameterized.parameters(
      dict(first_order=False), dict(first_order=True), dict(remat=True),
      dict(unroll=True), dict(batching="map"))
  def test_matches_one_hot_last_step_weights(self, **kw):
    (loss, metrics), grads = self.value_and_grads(None, **kw)
    (ref_loss, ref_metrics), ref_grads = self.value_and_grads(
        ml.last_step_weights(3), **kw)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    chex.assert_shape([metrics.loss, metrics.accuracy], (4, 1))
    np.testing.assert_allclose(metrics.loss[:, 0], ref_metrics.loss[:, -1],
                               rtol=1e-6)
    np.testing.assert_allclose(metrics.accuracy[:, 0],
                               ref_metrics.accuracy[:, -1])
    chex.assert_trees_all_close(grads, ref_grads, rtol=1e-5, atol=1e-7)

  def test_runs_the_query_set_once(self):
    # XLA's flop count of the unrolled program: the skipped query passes
    # after steps 1 and 2 must show (weights are an argument, so nothing can
    # be constant-folded away on the one-hot side).
    tasks = helpers.tiny_tasks(jax.random.key(1), queries=10)

    def flops(*weights):
      fn = jax.jit(jax.grad(lambda p, *w: ml.meta_loss(
          self.model.apply, p, self.lrs, tasks, *(w or (None,)),
          unroll=True)[0]))
      analysis = fn.lower(self.params, *weights).compile().cost_analysis()
      analysis = analysis[0] if isinstance(analysis, list) else analysis
      return analysis["flops"]

    self.assertLess(flops(), 0.75 * flops(ml.last_step_weights(3)))

  def test_adapt_returns_the_last_steps_metrics(self):
    task = helpers.first_task(self.tasks)
    adapted, metrics = ml.adapt(self.model.apply, self.params, self.lrs, task,
                                query_every_step=False)
    ref_params, ref_losses = reference_inner_loop(
        self.model.apply, self.params, 0.4, task, 3)
    chex.assert_trees_all_close(adapted, ref_params, rtol=1e-5, atol=1e-6)
    chex.assert_shape(metrics.loss, (1,))
    np.testing.assert_allclose(metrics.loss[0], ref_losses[-1], rtol=1e-5)

  def test_step_aware_model_sees_the_last_step_index(self):
    # Per-step batch norm: the final query pass must use the last step's
    # affine, exactly as the every-step path does.
    model = ml.models.conv4(3, input_shape=(8, 8, 1), filters=2,
                            num_blocks=1, bn_steps=3)
    params = model.init(jax.random.key(0))
    params = jax.tree.map(lambda p: p + 0.1 * jnp.arange(p.size).reshape(
        p.shape) / p.size, params)
    lrs = ml.fixed_inner_lrs(params, 0.4, 3)
    key = jax.random.key(3)
    tasks = ml.Task(jax.random.normal(key, (2, 3, 8, 8, 1)),
                    jnp.tile(jnp.arange(3), (2, 1)),
                    jax.random.normal(key, (2, 6, 8, 8, 1)),
                    jnp.tile(jnp.arange(3), (2, 2)))
    run = jax.jit(lambda w: ml.meta_loss(model.apply, params, lrs, tasks, w,
                                         step_aware=True)[0])
    np.testing.assert_allclose(run(None), run(ml.last_step_weights(3)),
                               rtol=1e-6)


def _unstack(tasks):
  return [jax.tree.map(lambda x, i=i: x[i], tasks)
          for i in range(tasks.support_x.shape[0])]


class ShapesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(1, 3)
  def test_shapes_and_finiteness(self, inner_steps):
    model = helpers.tiny_model()
    params = model.init(jax.random.key(0))
    lrs = ml.fixed_inner_lrs(params, 0.4, inner_steps)
    tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=5)

    @self.variant
    def run(p, a, t):
      return jax.value_and_grad(
          lambda p, a: ml.meta_loss(model.apply, p, a, t,
                                    ml.last_step_weights(inner_steps)),
          argnums=(0, 1), has_aux=True)(p, a)

    (loss, metrics), grads = run(params, lrs, tasks)
    chex.assert_shape(loss, ())
    chex.assert_shape([metrics.loss, metrics.accuracy], (5, inner_steps))
    chex.assert_trees_all_equal_shapes(grads[0], params)
    chex.assert_trees_all_equal_shapes(grads[1], lrs)
    chex.assert_tree_all_finite((loss, metrics, grads))
    self.assertTrue(bool(jnp.all((metrics.accuracy >= 0)
                                 & (metrics.accuracy <= 1))))


class MetaStepTest(parameterized.TestCase):

  @parameterized.parameters((False, False), (True, False), (False, True),
                            (True, True))
  def test_step_traces_once_and_learns(self, first_order, plus_plus):
    chex.clear_trace_counter()
    model = helpers.tiny_model()
    params = model.init(jax.random.key(0))
    lrs = ml.fixed_inner_lrs(params, 0.4, 2)
    tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=8)

    @chex.assert_max_traces(n=1)
    def task_fn(key, data):
      idx = jax.random.choice(key, 8, (4,), replace=False)
      return jax.tree.map(lambda x: x[idx], data)

    weights_fn = (schedules.msl_weights_fn(2, msl_epochs=2, steps_per_epoch=5)
                  if plus_plus else None)
    opt = optax.adam(1e-2)
    state = ml.init_meta_state(params, lrs, opt, learn_inner_lrs=plus_plus)
    step = ml.make_meta_step(model.apply, opt, task_fn, weights_fn,
                             first_order=first_order,
                             learn_inner_lrs=plus_plus, steps_per_call=5)
    key = jax.random.key(2)
    state, first = step(state, tasks, key)
    for _ in range(5):
      state, out = step(state, tasks, key)
    # MAML/FOMAML (no weights) run the query set after the last step only.
    chex.assert_shape(out.step_loss, (5, 2 if plus_plus else 1))
    self.assertEqual(int(state.step), 30)
    self.assertLess(float(out.loss[-5:].mean()), float(first.loss[:5].mean()))
    lr_changed = not np.allclose(state.meta.inner_lrs["head"]["kernel"], 0.4)
    self.assertEqual(lr_changed, plus_plus)
    # The caller's params survive the donated state.
    self.assertTrue(np.all(np.isfinite(params["head"]["kernel"])))


  def test_a_shorter_call_is_the_same_program_and_the_same_steps(self):
    model = helpers.tiny_model()
    params = model.init(jax.random.key(0))
    lrs = ml.fixed_inner_lrs(params, 0.4, 2)
    tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=8)
    task_fn = lambda key, data: jax.tree.map(
        lambda x: x[jax.random.choice(key, 8, (4,), replace=False)], data)
    opt = optax.adam(1e-2)
    fresh = lambda: ml.init_meta_state(params, lrs, opt,
                                       learn_inner_lrs=False)
    make = lambda n: ml.make_meta_step(model.apply, opt, task_fn, None,
                                       steps_per_call=n)
    key = jax.random.key(2)
    three, full = make(3)(fresh(), tasks, key)
    long_step = make(5)
    compiled = long_step.lower(fresh(), tasks, key, np.int32(5)).compile()
    short, out = compiled(fresh(), tasks, key, np.int32(3))
    self.assertEqual(int(short.step), 3)
    chex.assert_trees_all_close(short.meta, three.meta, rtol=1e-5)
    np.testing.assert_allclose(out.loss[:3], full.loss, rtol=1e-5)
    np.testing.assert_array_equal(out.loss[3:], 0.0)  # steps not taken
    whole, _ = compiled(fresh(), tasks, key, np.int32(5))
    self.assertEqual(int(whole.step), 5)


class ValidationTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.model = helpers.tiny_model()
    self.params = self.model.init(jax.random.key(0))
    self.lrs = ml.fixed_inner_lrs(self.params, 0.4, 2)
    self.tasks = helpers.tiny_tasks(jax.random.key(1))
    self.task = helpers.first_task(self.tasks)

  def assert_value_error(self, fn, *words):
    with self.assertRaises(ValueError) as ctx:
      fn()
    for word in words:
      self.assertIn(word, str(ctx.exception))

  def test_zero_inner_steps(self):
    self.assert_value_error(
        lambda: ml.fixed_inner_lrs(self.params, 0.4, 0), "inner_steps", "0")
    empty = jax.tree.map(lambda a: a[:0], self.lrs)
    self.assert_value_error(
        lambda: ml.adapt(self.model.apply, self.params, empty, self.task),
        "inner_lrs", "inner_steps")

  def test_bad_inner_lr_value(self):
    self.assert_value_error(
        lambda: ml.fixed_inner_lrs(self.params, -1.0, 2), "lr", "> 0")

  def test_inner_lrs_structure_mismatch(self):
    bad = {"head": self.lrs["head"]}
    self.assert_value_error(
        lambda: ml.adapt(self.model.apply, self.params, bad, self.task),
        "inner_lrs", "structure")

  def test_inner_lrs_leading_axis_mismatch(self):
    bad = dict(self.lrs)
    bad["head"] = jax.tree.map(lambda a: jnp.ones(3), self.lrs["head"])
    self.assert_value_error(
        lambda: ml.adapt(self.model.apply, self.params, bad, self.task),
        "inner_lrs", "inner_steps")
    scalar = jax.tree.map(lambda a: a[0], self.lrs)
    self.assert_value_error(
        lambda: ml.adapt(self.model.apply, self.params, scalar, self.task),
        "inner_lrs", "leading")
    wrong_shape = jax.tree.map(lambda a: jnp.ones((2, 7)), self.lrs)
    self.assert_value_error(
        lambda: ml.adapt(self.model.apply, self.params, wrong_shape,
                         self.task), "inner_lrs", "shape")

  def test_step_weights_wrong_length(self):
    self.assert_value_error(
        lambda: ml.meta_loss(self.model.apply, self.params, self.lrs,
                             self.tasks, jnp.ones(3)), "step_weights", "(2,)")

  @parameterized.parameters(False, True)
  def test_task_size_mismatch_and_float_labels(self, use_jit):
    run = lambda t: ml.meta_loss(self.model.apply, self.params, self.lrs, t,
                                 ml.last_step_weights(2))
    if use_jit:
      run = jax.jit(run)
    short = self.tasks._replace(support_y=self.tasks.support_y[:, :-1])
    self.assert_value_error(lambda: run(short), "support_x", "support_y")
    short_q = self.tasks._replace(query_x=self.tasks.query_x[:, :-1])
    self.assert_value_error(lambda: run(short_q), "query_x", "query_y")
    floats = self.tasks._replace(
        query_y=self.tasks.query_y.astype(jnp.float32))
    self.assert_value_error(lambda: run(floats), "query_y", "integer")


class ExtendInnerLrsTest(parameterized.TestCase):

  def test_extend_inner_lrs(self):
    lrs = {"w": jnp.array([0.1, 0.2]), "b": None}
    longer = ml.extend_inner_lrs(lrs, 4)
    np.testing.assert_allclose(longer["w"], [0.1, 0.2, 0.2, 0.2])
    self.assertIsNone(longer["b"])
    np.testing.assert_allclose(ml.extend_inner_lrs(lrs, 1)["w"], [0.1])
    with pytest.raises(ValueError, match="inner_steps"):
      ml.extend_inner_lrs(lrs, 0)
