"""iMAML: conjugate gradients, the implicit meta-gradient against finite
differences of L_Q(phi*(theta)), the rule on the one meta-step path, and a
few meta-steps on synthetic data."""

import jax
import jax.numpy as jnp
from jax import flatten_util
import numpy as np
import optax
import pytest

import metalearn as ml
from metalearn import algorithms
from metalearn import build
from metalearn import configs
from metalearn import fingerprint
from metalearn import imaml
from metalearn import objectives
from metalearn import step as step_lib
from metalearn import train
from tests import helpers


def test_conjugate_gradient_solves_a_positive_definite_system():
  rng = np.random.default_rng(0)
  m = rng.normal(size=(6, 6))
  a, b = m @ m.T + np.eye(6), rng.normal(size=6)
  want = np.linalg.solve(a, b)
  with jax.enable_x64(True):
    def matvec(t):  # a pytree of two leaves: [2] and [4].
      out = jnp.asarray(a) @ jnp.concatenate([t["x"], t["y"]])
      return {"x": out[:2], "y": out[2:]}
    rhs = {"x": jnp.asarray(b[:2]), "y": jnp.asarray(b[2:])}
    x = imaml.conjugate_gradient(matvec, rhs, 6)
    early = imaml.conjugate_gradient(matvec, rhs, 2)
  np.testing.assert_allclose(np.concatenate([x["x"], x["y"]]), want,
                             rtol=1e-8)
  assert not np.allclose(np.concatenate([early["x"], early["y"]]), want,
                         rtol=1e-3)



def _dense(a):
  return lambda t: {"x": jnp.asarray(a) @ t["x"]}


def test_conjugate_gradient_stops_at_negative_curvature():
  # I + H/lam away from a minimiser: an indefinite map. Plain CG's iterate
  # there is garbage (here 70 times b's norm); truncated CG keeps what it
  # had before the first direction of non-positive curvature.
  with jax.enable_x64(True):
    a = np.diag([1.0, -0.01])
    b = {"x": jnp.asarray([1.0, 1.0])}
    # Curvature along b: (1 - 0.01) / 2 > 0, one step; the next direction,
    # A-conjugate to b in two dimensions, has negative curvature.
    one_step = b["x"] * (2.0 / 0.99)
    x = imaml.conjugate_gradient(_dense(a), b, 2)["x"]
    np.testing.assert_allclose(x, one_step, rtol=1e-12)
    plain = imaml.conjugate_gradient(_dense(a), b, 2, min_curvature=-np.inf)
    np.testing.assert_allclose(plain["x"], [1.0, -100.0], rtol=1e-9)
    # Negative curvature along b itself: b, the first-order direction.
    x = imaml.conjugate_gradient(_dense(-np.eye(2)), b, 2)["x"]
    np.testing.assert_array_equal(x, b["x"])
    # A curvature floor stops where the map is nearly singular.
    a = np.diag([1.0, 1e-4])
    b = {"x": jnp.asarray([1.0, 1.0])}
    x = imaml.conjugate_gradient(_dense(a), b, 2, min_curvature=0.01)["x"]
    assert np.linalg.norm(x) < 2 * np.linalg.norm(b["x"])


LAM, LR, STEPS = 2.0, 0.2, 200


def _meta_objective(model, lrs, tasks):
  """theta -> mean L_Q(phi*(theta)), phi* by proximal gradient descent
  written out here (not with metalearn.imaml)."""
  ce = objectives.cross_entropy
  adapted = jax.tree.map(lambda r: r is not None, lrs,
                         is_leaf=lambda x: x is None)

  def objective(theta):
    def one(task):
      def body(_, phi):
        g = jax.grad(lambda q: ce(model.apply(q, task.support_x),
                                  task.support_y))(phi)
        return jax.tree.map(
            lambda a, p, gi, t: p - LR * (gi + LAM * (p - t)) if a else p,
            adapted, phi, g, theta)
      phi = jax.lax.fori_loop(0, STEPS, body, theta)
      return ce(model.apply(phi, task.query_x), task.query_y)
    return jnp.mean(jax.vmap(one)(tasks))
  return jax.jit(objective)


@pytest.mark.parametrize("frozen", [(), ("['dense0']['bias']",)])
def test_implicit_gradient_matches_finite_differences(frozen):
  # A solved inner problem (lambda = 2 makes it strongly convex here, 200
  # steps converge) and as many CG steps as parameters: the direction is
  # the exact gradient of L_Q(phi*(theta)), frozen leaves included.
  model = helpers.tiny_model()
  with jax.enable_x64(True):
    params = helpers.to_f64(model.init(jax.random.key(0)))
    lrs = helpers.to_f64(ml.fixed_inner_lrs(params, LR, STEPS,
                                            frozen=frozen))
    tasks = helpers.to_f64(helpers.tiny_tasks(jax.random.key(1),
                                              num_tasks=2))
    flat, unravel = flatten_util.ravel_pytree(params)
    direction, loss, metrics = jax.jit(
        lambda p: imaml.direction(model.apply, p, lrs, tasks, lam=LAM,
                                  cg_steps=flat.size))(params)
    rough, _, _ = jax.jit(
        lambda p: imaml.direction(model.apply, p, lrs, tasks, lam=LAM,
                                  cg_steps=1))(params)
    objective = _meta_objective(model, lrs, tasks)
    np.testing.assert_allclose(loss, objective(params), rtol=1e-8)
    eps = 1e-5
    probes = jax.random.normal(jax.random.key(2), (6, flat.size),
                               jnp.float64)
    fd = np.array([(objective(unravel(flat + eps * u)) -
                    objective(unravel(flat - eps * u))) / (2 * eps)
                   for u in probes])
    got = np.asarray(probes @ flatten_util.ravel_pytree(direction)[0])
    one_step = np.asarray(probes @ flatten_util.ravel_pytree(rough)[0])
  assert metrics.loss.shape == (2, STEPS)
  np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)
  # One CG step is not the solve: the test sees the difference.
  assert np.max(np.abs(one_step - fd)) > 1e-3


def test_rule_is_hashable_data_and_reads_the_config():
  assert imaml.imaml(2.0, 3) == imaml.imaml(2.0, 3)
  assert hash(imaml.imaml(2.0, 3)) == hash(imaml.imaml(2.0, 3))
  assert imaml.imaml(2.0, 3) != imaml.imaml(1.0, 3)
  c = configs.for_algorithm("imaml")
  c.imaml_lambda, c.imaml_cg_steps = 0.5, 7
  assert build.outer_rule(c).direction == imaml.ImplicitGradient(
      0.5, 7, c.imaml_cg_damping)
  assert build.inner_update(c) == imaml.proximal_sgd(0.5)
  assert algorithms.get("imaml").outer == imaml.IMAML
  c.imaml_cg_steps = 0
  with pytest.raises(ValueError, match="config.imaml_cg_steps=0"):
    build.outer_rule(c)
  for field in ("imaml_lambda", "imaml_cg_steps"):
    assert field in fingerprint.TRAINING_FIELDS


def test_rule_runs_through_make_meta_step():
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.1, 3)
  tasks = helpers.tiny_tasks(jax.random.key(1))
  optimizer = optax.sgd(0.1)
  rule, inner = imaml.imaml(2.0, 4), imaml.proximal_sgd(2.0)
  with pytest.raises(ValueError, match="inner rates"):
    step_lib.make_meta_step(model.apply, optimizer, lambda k, d: d, None,
                            learn_inner_lrs=True, outer=rule, inner=inner)
  step = step_lib.make_meta_step(model.apply, optimizer, lambda k, d: d,
                                 None, outer=rule, inner=inner,
                                 batching="map", donate=False)
  state = step_lib.init_meta_state(params, lrs, optimizer,
                                   learn_inner_lrs=False)
  losses, moves = [], []
  for _ in range(3):
    before = state.meta.params
    state, out = step(state, tasks, jax.random.key(0))
    moves.append(jax.tree.map(lambda b, a: (b - a) / 0.1, before,
                              state.meta.params))
    losses.append(float(out.loss))
    assert out.step_loss.shape == (3,) and out.step_accuracy.shape == (3,)
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  # The first move is imaml.direction's (vmap there, map in the step).
  want, loss, _ = jax.jit(lambda p: imaml.direction(
      model.apply, p, lrs, tasks, lam=2.0, cg_steps=4))(params)
  np.testing.assert_allclose(losses[0], loss, rtol=1e-5)
  jax.tree.map(lambda m, w: np.testing.assert_allclose(m, w, rtol=1e-3,
                                                       atol=1e-6),
               moves[0], want)


def test_trains_on_synthetic_and_beats_its_start(tmp_path):
  c = configs.for_algorithm("imaml")
  c.dataset = "synthetic"
  c.n_way, c.k_shot, c.n_query, c.eval_n_query = 3, 2, 3, 3
  c.meta_batch_size = 8
  c.model, c.hidden = "mlp", (32,)
  c.inner_steps, c.eval_inner_steps, c.inner_lr = 3, 3, 0.1
  c.meta_steps, c.steps_per_call, c.steps_per_epoch = 30, 10, 10
  c.outer_lr = 3e-3
  c.val_tasks, c.eval_every, c.test_tasks = 0, 0, 60
  c.checkpoint_every, c.progress = 0, False
  _, test = train.train_and_evaluate(c, tmp_path)
  exp = build.build_experiment(c)
  before = build.evaluate_meta(c, exp, build.initial_state(c, exp).meta,
                               exp.test_tasks)
  assert test.loss < before.loss and test.accuracy > before.accuracy
  assert test.accuracy > 1 / c.n_way + 0.1


def test_damping_weighs_the_hessian_less_down_to_the_query_gradient():
  model = helpers.tiny_model()
  with jax.enable_x64(True):
    phi = helpers.to_f64(model.init(jax.random.key(0)))
    lrs = helpers.to_f64(ml.fixed_inner_lrs(phi, LR, 3))
    task = jax.tree.map(lambda x: x[0], helpers.to_f64(
        helpers.tiny_tasks(jax.random.key(1), num_tasks=1)))
    flat = lambda t: flatten_util.ravel_pytree(t)[0]

    @jax.jit
    def solve(lam, damping):
      return flat(imaml.implicit_gradient(model.apply, phi, lrs, task,
                                          lam=lam, cg_steps=40,
                                          damping=damping))
    query_grad = flat(jax.grad(lambda p: objectives.cross_entropy(
        model.apply(p, task.query_x), task.query_y))(phi))
    # Damping adds to lambda in the linear system, nowhere else.
    np.testing.assert_allclose(solve(2.0, 3.0), solve(5.0, 0.0), rtol=1e-10)
    assert not np.allclose(solve(2.0, 3.0), solve(2.0, 0.0), rtol=1e-3)
    # Without bound it is the first-order direction.
    np.testing.assert_allclose(solve(2.0, 1e12), query_grad, rtol=1e-8)
  c = configs.for_algorithm("imaml")
  c.imaml_cg_damping = 3.0
  assert build.outer_rule(c).direction == imaml.ImplicitGradient(1.0, 5, 3.0)
  c.imaml_cg_damping = -1.0
  with pytest.raises(ValueError, match="config.imaml_cg_damping=-1.0"):
    build.outer_rule(c)
  assert "imaml_cg_damping" in fingerprint.TRAINING_FIELDS
