"""ProtoNet and Proto-MAML: prototypes, the prototype head, the meta-gradient
through the prototypes, and a few meta-steps of each on synthetic data."""

import jax
import jax.numpy as jnp
import jax.test_util as jtu
import numpy as np
import pytest

import metalearn as ml
from metalearn import algorithms
from metalearn import build
from metalearn import configs
from metalearn import core
from metalearn import proto
from metalearn import rules
from metalearn import train
from tests import helpers


def _split(model):
  return core.BodyHead(model.body, model.head)


def _softmax_ce(logits, labels):
  logits = logits - logits.max(axis=1, keepdims=True)
  logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  return -np.mean(logp[np.arange(len(labels)), labels])


def test_protonet_logits_are_minus_squared_distances():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(6, 4)).astype(np.float32)
  labels = np.array([0, 1, 2, 0, 1, 2])
  queries = rng.normal(size=(5, 4)).astype(np.float32)
  protos = proto.prototypes(jnp.asarray(features), jnp.asarray(labels), 3)
  means = np.stack([features[labels == k].mean(axis=0) for k in range(3)])
  np.testing.assert_allclose(protos, means, rtol=1e-6)
  want = -np.array([[np.sum((q - c) ** 2) for c in means] for q in queries])
  np.testing.assert_allclose(proto.distance_logits(jnp.asarray(queries),
                                                   protos), want, rtol=1e-5)


def test_protonet_runner_scores_queries_by_distance():
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  task = helpers.first_task(helpers.tiny_tasks(jax.random.key(1)))
  lrs = ml.fixed_inner_lrs(params, 0.1, 3)
  run = proto.PROTONET.make(model.apply, params, lrs, body_head=_split(model))
  _, metrics = jax.jit(run)(task)
  support = np.asarray(model.body(params, task.support_x))
  query = np.asarray(model.body(params, task.query_x))
  labels = np.asarray(task.support_y)
  means = np.stack([support[labels == k].mean(axis=0) for k in range(3)])
  logits = -np.sum((query[:, None, :] - means[None]) ** 2, axis=-1)
  assert metrics.loss.shape == (3,)  # [inner_steps], no step taken
  np.testing.assert_allclose(metrics.loss, _softmax_ce(
      logits, np.asarray(task.query_y)), rtol=1e-5)
  np.testing.assert_allclose(metrics.accuracy, np.mean(
      logits.argmax(axis=1) == np.asarray(task.query_y)))
  with pytest.raises(ValueError, match="body and head"):
    proto.PROTONET.make(model.apply, params, lrs)


def test_prototype_head_is_protonet_up_to_a_per_query_constant():
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  task = helpers.first_task(helpers.tiny_tasks(jax.random.key(1)))
  support = model.body(params, task.support_x)
  query = model.body(params, task.query_x)
  protos = proto.prototypes(support, task.support_y, 3)
  head_logits = model.head(proto.with_prototype_head(params, protos), query)
  distances = proto.distance_logits(query, protos)
  # 2 c.x - |c|^2 = -|x - c|^2 + |x|^2.
  np.testing.assert_allclose(
      head_logits, distances + jnp.sum(query ** 2, axis=1, keepdims=True),
      rtol=1e-5, atol=1e-5)
  # Proto-MAML with zero inner rates: ProtoNet's loss and predictions.
  lrs = jax.tree.map(jnp.zeros_like, ml.fixed_inner_lrs(params, 0.1, 2))
  _, pm = proto.prototype_init(rules.sgd()).make(
      model.apply, params, lrs, body_head=_split(model))(task)
  _, pn = proto.PROTONET.make(model.apply, params, lrs,
                              body_head=_split(model))(task)
  np.testing.assert_allclose(pm.loss, pn.loss, rtol=1e-5)
  np.testing.assert_allclose(pm.accuracy, pn.accuracy)


def _proto_maml_loss(model, lrs, tasks, first_order=False):
  update = proto.prototype_init(rules.sgd())
  return lambda p: core.meta_loss(
      model.apply, p, lrs, tasks, None, first_order=first_order,
      body_head=_split(model), make_runner=update.make)[0]


def test_proto_maml_grad_matches_finite_differences():
  model = helpers.tiny_model()
  with jax.enable_x64(True):
    params = helpers.to_f64(model.init(jax.random.key(0)))
    lrs = helpers.to_f64(ml.fixed_inner_lrs(params, 0.3, 2))
    tasks = helpers.to_f64(helpers.tiny_tasks(jax.random.key(1),
                                              num_tasks=2))
    loss = jax.jit(_proto_maml_loss(model, lrs, tasks))
    jtu.check_grads(loss, (params,), order=1, modes=("rev",), eps=1e-5,
                    atol=1e-6, rtol=1e-6)
    grads = jax.grad(loss)(params)
  # The head is rebuilt from the prototypes: its own weights get nothing;
  # the body learns through the prototypes and the inner steps.
  assert not np.any(grads["head"]["kernel"])
  assert np.all(np.abs(grads["dense0"]["kernel"]).sum() > 0)


def test_first_order_proto_maml_keeps_the_prototype_path():
  # first_order stops the inner gradients only: the meta-gradient is the
  # query gradient at the adapted weights pulled back through the
  # prototype initialisation.
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.3, 1)
  tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=1)
  task = helpers.first_task(tasks)
  n_way = proto.n_way(params)

  def init(p):
    feats = model.body(p, task.support_x)
    return proto.with_prototype_head(
        p, proto.prototypes(feats, task.support_y, n_way))

  @jax.jit
  def closed_form(params):
    adapted, _ = core.adapt(model.apply, init(params), lrs, task,
                            first_order=True)
    query_grad = jax.grad(lambda p: core.cross_entropy(
        model.apply(p, task.query_x), task.query_y))(adapted)
    return jax.vjp(init, params)[1](query_grad)[0]

  want = closed_form(params)
  got = jax.jit(jax.grad(_proto_maml_loss(model, lrs, tasks,
                                          first_order=True)))(params)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4,
                                                       atol=1e-6), got, want)
  assert np.abs(got["dense0"]["kernel"]).sum() > 0


def _tiny_config(name):
  c = configs.for_algorithm(name)
  c.dataset = "synthetic"
  c.n_way, c.k_shot, c.n_query, c.eval_n_query = 3, 2, 3, 3
  c.meta_batch_size = 8
  c.model, c.hidden = "mlp", (32,)
  c.inner_steps, c.eval_inner_steps, c.inner_lr = 1, 1, 0.1
  c.meta_steps, c.steps_per_call, c.steps_per_epoch = 30, 10, 10
  c.outer_lr = 3e-3
  c.val_tasks, c.eval_every, c.test_tasks = 0, 0, 60
  c.checkpoint_every, c.progress = 0, False
  return c


@pytest.mark.parametrize("name", ["protonet", "protomaml"])
def test_trains_on_synthetic_and_beats_its_start(name, tmp_path):
  config = _tiny_config(name)
  assert algorithms.get(name).prototypes
  _, test = train.train_and_evaluate(config, tmp_path)
  exp = build.build_experiment(config)
  start = build.initial_state(config, exp)
  before = build.evaluate_meta(config, exp, start.meta, exp.test_tasks)
  assert test.loss < before.loss and test.accuracy > before.accuracy
  assert test.accuracy > 1 / config.n_way + 0.1


def test_protonet_is_tested_once_not_once_per_inner_step():
  # ProtoNet has no inner loop: more test steps would repeat one prediction.
  protonet, protomaml = _tiny_config("protonet"), _tiny_config("protomaml")
  for c in (protonet, protomaml):
    c.eval_inner_steps, c.test_tasks = 3, 4
  assert build.eval_inner_steps(protonet) == 1
  assert build.eval_inner_steps(protomaml) == 3
  for c, steps in ((protonet, 1), (protomaml, 3)):
    exp = build.build_experiment(c)
    start = build.initial_state(c, exp)
    result = build.evaluate_meta(c, exp, start.meta, exp.test_tasks)
    assert result.step_loss.shape == (steps,), c.algorithm
