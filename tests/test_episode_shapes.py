"""Episodes of any way and shot: the padded sampler, masked losses and
meta-gradients equal to the unpadded ones, one compiled step for every
shape, and evaluation at another way and shot."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metalearn as ml
from metalearn import build
from metalearn import config_checks
from metalearn import configs
from metalearn import core
from metalearn import evaluate
from metalearn import imaml
from metalearn import inner_lrs as inner_lrs_lib
from metalearn import masking
from metalearn import proto
from metalearn import reptile
from metalearn import rules
from metalearn import train
from metalearn.data import episodes
from metalearn.data import images
from metalearn.data import shapes
from metalearn.data import synthetic
from metalearn.models.norm_pool import TransductiveBatchNorm
from metalearn.models.conv4 import dense_head
from tests import helpers


@functools.lru_cache(maxsize=None)
def _train_images():
  return jnp.asarray(synthetic.make_splits().train)


# The sampler.

def test_sampler_draws_every_way_and_shot_within_bounds():
  key = jax.random.key(0)
  sizes = dict(n_way=5, k_shot=3, n_query=2, batch_size=200)
  tasks = shapes.sample_tasks(key, _train_images(), min_n_way=2,
                              min_k_shot=1, **sizes)
  chex.assert_shape(tasks.support_x, (200, 15, 28, 28, 1))
  chex.assert_shape(tasks.query_x, (200, 10, 28, 28, 1))
  ways, shots = shapes.episode_sizes(tasks, k_shot=3)
  assert set(ways) == {2, 3, 4, 5} and set(shots) == {1, 2, 3}
  label, slot = np.arange(15) // 3, np.arange(15) % 3
  support = (label < ways[:, None]) & (slot < shots[:, None])
  query = np.arange(10) // 2 < ways[:, None]
  np.testing.assert_array_equal(tasks.mask.support, support)
  np.testing.assert_array_equal(tasks.mask.query, query)
  np.testing.assert_array_equal(tasks.support_y, np.where(support, label, -1))
  np.testing.assert_array_equal(tasks.query_y,
                                np.where(query, np.arange(10) // 2, -1))
  # Padded rows are blank; the real ones are the fixed sampler's episode.
  full = episodes.sample_tasks(jax.random.split(key, 3)[0], _train_images(),
                               **sizes)
  for x, want, real in ((tasks.support_x, full.support_x, support),
                        (tasks.query_x, full.query_x, query)):
    x, want = np.asarray(x), np.asarray(want)
    assert not x[~real].any()
    np.testing.assert_array_equal(x[real], want[real])


@pytest.mark.parametrize("bounds, word", [
    (dict(min_n_way=6, min_k_shot=1), "min_n_way=6"),
    (dict(min_n_way=2, min_k_shot=0), "min_k_shot=0"),
])
def test_sampler_bounds_out_of_range_are_named(bounds, word):
  with pytest.raises(ValueError, match=word):
    shapes.sample_tasks(jax.random.key(0), _train_images(), n_way=5,
                        k_shot=3, n_query=2, batch_size=2, **bounds)


# Masked entries change nothing.

def test_masked_batch_norm_uses_only_the_real_rows():
  x = jax.random.normal(jax.random.key(0), (6, 4, 4, 3)) * 3 + 1
  mask = jnp.array([True, False, True, True, False, True])
  bn = TransductiveBatchNorm()
  variables = bn.init(jax.random.key(1), x)
  got = bn.apply(variables, x, None, mask)
  want = bn.apply(variables, x[mask])
  np.testing.assert_allclose(got[mask], want, rtol=1e-5, atol=1e-5)


MAX_WAY, MAX_SHOT, QUERIES = 3, 2, 2
SHAPE = (8, 8, 1)


def _unpadded(key, way, shot):
  """One task of ``way`` classes, ``shot`` support and QUERIES queries per
  class, class-major as the sampler lays it out."""
  k_s, k_q = jax.random.split(key)
  return ml.Task(jax.random.normal(k_s, (way * shot, *SHAPE)),
                 jnp.repeat(jnp.arange(way), shot),
                 jax.random.normal(k_q, (way * QUERIES, *SHAPE)),
                 jnp.repeat(jnp.arange(way), QUERIES))


def _padded(key, task, way, shot):
  """``task`` padded by hand to MAX_WAY x MAX_SHOT: the padded rows hold
  noise with valid labels, so only the mask can keep them out."""
  k_sx, k_sy, k_qx, k_qy = jax.random.split(key, 4)
  label, slot = np.arange(MAX_WAY * MAX_SHOT) // MAX_SHOT, np.arange(
      MAX_WAY * MAX_SHOT) % MAX_SHOT
  support = (label < way) & (slot < shot)
  query = np.arange(MAX_WAY * QUERIES) // QUERIES < way

  def fill(k_x, k_y, real, x, y):
    noise_x = jax.random.normal(k_x, (real.size, *SHAPE)) * 5
    noise_y = jax.random.randint(k_y, (real.size,), 0, MAX_WAY)
    rows = np.flatnonzero(real)
    return noise_x.at[rows].set(x), noise_y.at[rows].set(y)
  sx, sy = fill(k_sx, k_sy, support, task.support_x, task.support_y)
  qx, qy = fill(k_qx, k_qy, query, task.query_x, task.query_y)
  return ml.Task(sx, sy, qx, qy, ml.EpisodeMask(jnp.asarray(support),
                                                jnp.asarray(query)))


def _meta_output(name, apply_fn, body, params, tasks):
  """Algorithm ``name``'s (meta-loss or Reptile's loss, meta-gradient or
  move) on a task batch, one inner step."""
  split = core.BodyHead(body, dense_head)
  lrs = ml.fixed_inner_lrs(params, 0.3, 1, frozen=("norm",))
  head_lrs = ml.fixed_inner_lrs(params, 0.3, 1,
                                frozen=inner_lrs_lib.outside_head(params))
  if name == "reptile":
    move, loss, _ = reptile.direction(apply_fn, params, lrs, tasks)
    return loss, move
  if name == "imaml":
    direction, loss, _ = imaml.direction(apply_fn, params, lrs, tasks,
                                         lam=1.0, cg_steps=2)
    return loss, direction
  inner, first_order, rates, body_head = {
      "maml": (rules.sgd(), False, lrs, None),
      "fomaml": (rules.sgd(), True, lrs, None),
      "anil": (rules.sgd(), False, head_lrs, split),
      "protonet": (proto.PROTONET, False, lrs, split),
      "protomaml": (proto.prototype_init(rules.sgd()), False, lrs, split),
  }[name]
  return jax.value_and_grad(lambda p: core.meta_loss(
      apply_fn, p, rates, tasks, None, first_order=first_order,
      body_head=body_head, make_runner=inner.make)[0])(params)


def _narrow(params, way):
  """``params`` with the head's first ``way`` classes only."""
  head = params["head"]
  return {**params, "head": {"kernel": head["kernel"][:, :way],
                             "bias": head["bias"][:way]}}


def _widen(grads, way):
  """Head gradients of ``way`` classes, zero-padded to MAX_WAY."""
  head = grads["head"]
  pad = MAX_WAY - way
  return {**grads, "head": {
      "kernel": jnp.pad(head["kernel"], ((0, 0), (0, pad))),
      "bias": jnp.pad(head["bias"], (0, pad))}}


def _padded_and_unpadded(name):
  """``name``'s outputs on a padded batch of two tasks (2-way 1-shot and
  3-way 2-shot in a 3-way 2-shot shape) and the mean of its outputs on each
  task unpadded (the head cut to the task's classes), in float64."""
  with jax.enable_x64(True):
    model = ml.models.conv4(MAX_WAY, input_shape=SHAPE, filters=3,
                            num_blocks=1, conv_impl="xla")
    params = helpers.to_f64(model.init(jax.random.key(0)))
    sizes = ((2, 1), (3, 2))
    keys = jax.random.split(jax.random.key(1), 4)
    tasks = [helpers.to_f64(_unpadded(keys[i], *s))
             for i, s in enumerate(sizes)]
    padded = [helpers.to_f64(_padded(keys[2 + i], t, *s))
              for i, (t, s) in enumerate(zip(tasks, sizes))]
    batch = jax.tree.map(lambda *x: jnp.stack(x), *padded)
    got = jax.jit(functools.partial(_meta_output, name, model.apply,
                                    model.body))(params, batch)
    run = jax.jit(functools.partial(_meta_output, name,
                                    proto.prototype_apply(model.body),
                                    model.body))
    wants = [run(_narrow(params, way), jax.tree.map(lambda x: x[None], task))
             for task, (way, _) in zip(tasks, sizes)]
    want = (np.mean([w[0] for w in wants]), jax.tree.map(
        lambda *g: np.mean(np.stack(g), axis=0),
        *[_widen(w[1], way) for w, (way, _) in zip(wants, sizes)]))
    return jax.tree.map(np.asarray, got), want


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "protonet",
                                  "protomaml", "reptile", "imaml"])
def test_padded_batch_equals_its_tasks_unpadded(name):
  (got_loss, got_grads), (want_loss, want_grads) = _padded_and_unpadded(name)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-9)
  chex.assert_trees_all_close(got_grads, want_grads, rtol=1e-7, atol=1e-10)
  assert np.abs(got_grads["conv0"]["kernel"]).sum() > 0


# One compiled step for every shape.

def _varying_config():
  c = configs.base()
  c.dataset, c.rotate = "synthetic", False
  c.n_way, c.min_n_way, c.k_shot, c.min_k_shot = 4, 2, 3, 1
  c.n_query, c.eval_n_query, c.meta_batch_size = 2, 2, 4
  c.model, c.hidden = "mlp", (8,)
  c.inner_steps, c.eval_inner_steps, c.inner_lr = 1, 1, 0.1
  c.meta_steps, c.steps_per_call, c.steps_per_epoch = 4, 2, 2
  c.val_tasks, c.eval_every, c.test_tasks = 0, 0, 8
  c.checkpoint_every, c.progress = 0, False
  return c


def test_one_compiled_step_serves_every_shape():
  config = _varying_config()
  config_checks.validate_config(config)
  model, data = build.build_model(config), _train_images()
  task_fn = images.task_fn(config)
  key, steps = jax.random.key(3), 4
  drawn = jax.jit(task_fn)
  sizes = set()
  for i in range(steps):
    ways, shots = shapes.episode_sizes(drawn(jax.random.fold_in(key, i),
                                             data), k_shot=config.k_shot)
    sizes.update(zip(ways.tolist(), shots.tolist()))
  assert len(sizes) >= 4  # the steps below see many shapes

  traces = []

  def counted(key, data):
    traces.append(1)
    return task_fn(key, data)
  optimizer = optax.adam(1e-3)
  params = model.init(jax.random.key(0))
  state = ml.init_meta_state(params, ml.fixed_inner_lrs(params, 0.1, 1),
                             optimizer, learn_inner_lrs=False)
  step = ml.make_meta_step(model.apply, optimizer, counted, None)
  for _ in range(steps):
    state, out = step(state, data, key)
    assert np.isfinite(float(out.loss))
  assert int(state.step) == steps and len(traces) == 1


# Evaluation at another way and shot.

def _tasks(key, way, num_tasks=3, shots=2, queries=3):
  k_s, k_q, k_m = jax.random.split(key, 3)
  means = jax.random.normal(k_m, (num_tasks, way, 4)) * 2

  def draw(k, per_class):
    labels = jnp.repeat(jnp.arange(way), per_class)
    x = means[:, labels] + jax.random.normal(k, (num_tasks, labels.size, 4))
    return x, jnp.broadcast_to(labels, (num_tasks, labels.size))
  return ml.Task(*draw(k_s, shots), *draw(k_q, queries))


def test_a_narrower_task_set_hides_the_heads_other_classes():
  model = ml.models.mlp(5, input_shape=(4,), hidden=(6,))
  params = model.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.5, 2)
  tasks = _tasks(jax.random.key(1), way=3)
  got = evaluate.evaluate(model.apply, params, lrs, masking.full_mask(tasks),
                          inner_steps=2)
  want = evaluate.evaluate(proto.prototype_apply(model.body),
                           _narrow(params, 3), lrs, tasks, inner_steps=2)
  for field in ("task_step_loss", "task_step_accuracy", "task_initial_loss",
                "task_initial_accuracy"):
    np.testing.assert_allclose(getattr(got, field), getattr(want, field),
                               rtol=1e-5, atol=1e-6, err_msg=field)
  unmasked = evaluate.evaluate(model.apply, params, lrs, tasks, inner_steps=2)
  assert not np.allclose(unmasked.task_step_loss, want.task_step_loss)


@pytest.mark.parametrize("update", [rules.sgd(), proto.PROTONET,
                                    proto.prototype_init(rules.sgd())])
def test_a_wider_task_set_starts_from_the_prototype_head_of_its_width(update):
  wide = ml.models.mlp(5, input_shape=(4,), hidden=(6,))
  narrow = ml.models.mlp(3, input_shape=(4,), hidden=(6,))
  params = wide.init(jax.random.key(0))
  lrs = ml.fixed_inner_lrs(params, 0.5, 2)
  tasks = _tasks(jax.random.key(1), way=5)
  split = core.BodyHead(wide.body, wide.head)
  # A 3-class head evaluated at 5 classes, against the 5-class head's
  # Proto-MAML (or ProtoNet), which overwrites the head the same way.
  got = evaluate.evaluate(narrow.apply, _narrow(params, 3),
                          ml.fixed_inner_lrs(_narrow(params, 3), 0.5, 2),
                          tasks, inner_steps=2, initial=False,
                          body_head=core.BodyHead(narrow.body, narrow.head),
                          inner=proto.at_width(update, 5))
  base = update if update.runner is not core.task_runner else (
      proto.prototype_init(update))
  want = evaluate.evaluate(wide.apply, params, lrs, tasks, inner_steps=2,
                           body_head=split, inner=base)
  np.testing.assert_allclose(got.task_step_loss, want.task_step_loss,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got.task_step_accuracy,
                                want.task_step_accuracy)
  assert got.task_initial_loss is None


def test_trains_on_any_shape_and_tests_at_another_way_and_shot(tmp_path):
  config = _varying_config()
  config.n_way, config.min_n_way, config.k_shot = 3, 2, 2
  config.eval_n_way, config.eval_k_shot = 8, 4
  config.hidden = (64,)
  summary, test = train.train_and_evaluate(config, tmp_path)
  assert (summary["eval_n_way"], summary["eval_k_shot"]) == (8, 4)
  assert test.num_tasks == 8 and np.isfinite(test.loss)
  # A 3-class head could score at most 3/8: the prototype head of the test
  # tasks' width predicts all 8 classes (57% here).
  assert test.accuracy > 0.45
  assert test.task_initial_loss is None


def test_narrower_test_tasks_carry_a_full_mask():
  config = _varying_config()
  config.eval_n_way, config.eval_k_shot = 2, 5
  exp = build.build_experiment(config)
  chex.assert_shape(exp.test_tasks.support_x, (8, 10, 28, 28, 1))
  assert exp.test_tasks.mask is not None
  assert bool(jnp.all(exp.test_tasks.mask.query))
  config.eval_n_way = 0
  assert build.build_experiment(config).test_tasks.mask is None


# Config checks.

@pytest.mark.parametrize("fields, words", [
    (dict(min_n_way=5), r"config.min_n_way=5 .* \[2, n_way=4\]"),
    (dict(min_n_way=1), r"config.min_n_way=1 .* \[2, n_way=4\]"),
    (dict(min_k_shot=4), r"config.min_k_shot=4 .* \[1, k_shot=3\]"),
    (dict(eval_n_way=1), r"config.eval_n_way=1 .* >= 2"),
    (dict(eval_k_shot=-1), r"config.eval_k_shot=-1 .* >= 0"),
    (dict(eval_k_shot=19), r"config.eval_n_query=2 .* eval_k_shot \+ "
                           r"eval_n_query must be <= 20"),
    (dict(eval_n_way=8, ensemble_top_k=2), r"config.eval_n_way=8 .* "
                                           r"ensemble_top_k=2"),
    (dict(eval_n_way=8, algorithm="mamlpp"), r"config.eval_n_way=8 .* "
                                             r"n_way=4 for mamlpp"),
    (dict(dataset="sinusoid", loss="mse"), r"config.min_n_way=2 .* "
                                           r"'sinusoid'"),
])
def test_bad_shape_fields_are_named(fields, words):
  config = _varying_config()
  config.update(fields)
  with pytest.raises(ValueError, match=words):
    config_checks.validate_config(config)
