"""train_maml: the four flag combinations learn; every task source works."""

import itertools

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml
from metalearn import api
from metalearn.data import episodes
from tests import helpers

STEPS = 2
FAST = dict(inner_lr=0.5, outer_lr=0.01, inner_steps=STEPS, progress=False)


def pool():
  return helpers.tiny_tasks(jax.random.key(1), num_tasks=16)


def learned(result, window=10):
  """Last-step query loss at the start and the end of training."""
  last = result.step_losses[:, -1]
  return last[:window].mean(), last[-window:].mean()


class FlagsTest(parameterized.TestCase):

  @parameterized.parameters(itertools.product((False, True), (False, True)))
  def test_each_combination_learns(self, first_order, plus_plus):
    result = api.train_maml(helpers.tiny_model(), pool(),
                            first_order=first_order, plus_plus=plus_plus,
                            meta_steps=60, meta_batch_size=4, **FAST)
    chex.assert_shape(result.losses, (60,))
    chex.assert_shape(result.step_losses, (60, STEPS if plus_plus else 1))
    assert int(result.state.step) == 60
    start, end = learned(result)
    assert end < start - 0.05, (start, end)
    lrs = np.concatenate([np.ravel(x) for x in jax.tree.leaves(
        result.inner_lrs)])
    if plus_plus:  # Learned rates moved; step 0 weighs every step equally.
      assert not np.allclose(lrs, 0.5)
      np.testing.assert_allclose(result.losses[0],
                                 result.step_losses[0].mean(), rtol=1e-5)
      # 10 epochs of 4 meta-steps weigh every step; then only the last step
      # is computed (the others are NaN) and it is the whole loss.
      assert np.all(np.isfinite(result.step_losses[:40]))
      assert np.all(np.isnan(result.step_losses[40:, :-1]))
      np.testing.assert_allclose(result.losses[40:],
                                 result.step_losses[40:, -1], rtol=1e-6)
    else:  # Fixed rates; the loss is the last step's.
      np.testing.assert_allclose(lrs, 0.5)
      np.testing.assert_allclose(result.losses, result.step_losses[:, -1],
                                 rtol=1e-6)
    assert result.stats.tasks == 240
    assert result.stats.compile_seconds > 0 and result.stats.train_seconds > 0

  def test_first_order_flag_changes_the_update(self):
    runs = [api.train_maml(helpers.tiny_model(), pool(), first_order=fo,
                           meta_steps=3, meta_batch_size=4, **FAST)
            for fo in (False, True)]
    # Same tasks and init: identical first loss, different parameters after.
    np.testing.assert_allclose(runs[0].losses[0], runs[1].losses[0])
    assert not np.allclose(runs[0].params["head"]["kernel"],
                           runs[1].params["head"]["kernel"])


def sampler(key):
  return helpers.tiny_tasks(key, num_tasks=4)


def batches(n):
  """n Task batches of 4 tasks (5 distinct ones, repeated)."""
  distinct = [sampler(jax.random.key(i)) for i in range(5)]
  return [distinct[i % 5] for i in range(n)]


class SourcesTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("sampler", lambda: dict(tasks=sampler)),
      ("sampler_with_data", lambda: dict(
          tasks=lambda key, data: episodes.sample_from_pool(key, data, 4),
          task_data=pool())),
      ("list_cycled", lambda: dict(tasks=batches(5))),
      ("generator", lambda: dict(tasks=(b for b in batches(40)))),
  )
  def test_task_source(self, make):
    result = api.train_maml(helpers.tiny_model(), meta_steps=40,
                            first_order=True, **make(), **FAST)
    chex.assert_shape(result.step_losses, (40, 1))  # last step only
    assert result.stats.tasks == 160
    start, end = learned(result)
    assert end < start, (start, end)

  def test_flax_module_and_apply_fn(self):
    module = ml.models.MLP(helpers.N_WAY, (5,))
    by_module = api.train_maml(module, pool(), meta_steps=20,
                               meta_batch_size=4, first_order=True, **FAST)
    params = helpers.tiny_model().init(jax.random.key(0))
    by_fn = api.train_maml(helpers.tiny_model().apply, pool(), params=params,
                           meta_steps=20, meta_batch_size=4,
                           first_order=True, **FAST)
    # A flax variables dict is accepted too, and is the same as its params.
    by_vars = api.train_maml(module, pool(), params={"params": params},
                             meta_steps=20, meta_batch_size=4,
                             first_order=True, **FAST)
    chex.assert_trees_all_close(by_fn.params, by_vars.params, rtol=1e-5)
    for result in (by_module, by_fn):
      start, end = learned(result, 5)
      assert end < start, (start, end)
    chex.assert_trees_all_equal_shapes(by_module.params, params)
    # The caller's params are copied, never donated away.
    assert np.isfinite(np.asarray(params["head"]["kernel"])).all()

  def test_exhausted_iterator_raises(self):
    with pytest.raises(ValueError, match="ran out after 3 batches"):
      api.train_maml(helpers.tiny_model(), iter(batches(3)), meta_steps=5,
                     first_order=True, **FAST)


def _single_task():
  return helpers.first_task(pool())


def _float_labels():
  p = pool()
  return p._replace(support_y=p.support_y.astype(jnp.float32))


BAD = [
    ("inner_lr", dict(inner_lr=0.0)),
    ("outer_lr", dict(outer_lr=-1.0)),
    ("inner_steps", dict(inner_steps=0)),
    ("meta_steps", dict(meta_steps=0)),
    ("first_order", dict(first_order="yes")),
    ("plus_plus", dict(plus_plus=1)),
    ("msl_epochs", dict(msl_epochs=0)),
    ("meta_batch_size", dict(meta_batch_size=17)),
    ("batching", dict(batching="pmap")),
    ("frozen", dict(frozen="head")),
    ("frozen", dict(frozen=("",))),
    ("model", dict(model=42)),
    ("params", dict(model=lambda p, x: x)),
    ("model must map", dict(model=lambda p, x: x.sum(), params={})),
    ("tasks must be", dict(tasks=42)),
    ("single task", dict(tasks=_single_task)),
    ("empty", dict(tasks=[])),
    ("integer class labels", dict(tasks=_float_labels)),
    ("meta_batch_size applies only", dict(tasks=sampler, meta_batch_size=4)),
    ("task_data", dict(task_data=np.zeros(3))),
    ("seed", dict(seed=-1)),
    ("gives 3 logits but the tasks are 5-way", dict(
        model=ml.models.mlp(3, input_shape=(4,), hidden=(5,)),
        tasks=lambda: _relabelled(lambda y: y + 2))),
    ("must hold labels in", dict(tasks=lambda: _relabelled(lambda y: y - 1))),
]


def _relabelled(fn):
  p = pool()
  return p._replace(support_y=fn(p.support_y), query_y=fn(p.query_y))


@pytest.mark.parametrize("match,kwargs", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_raise_value_error_naming_them(match, kwargs):
  args = dict(model=helpers.tiny_model(), tasks=pool(), meta_steps=2,
              progress=False)
  args.update(kwargs)
  if callable(args["tasks"]) and args["tasks"] is not sampler:
    args["tasks"] = args["tasks"]()
  with pytest.raises(ValueError, match=match):
    api.train_maml(args.pop("model"), args.pop("tasks"), **args)


def test_non_finite_loss_stops_with_the_meta_step():
  model = helpers.tiny_model()
  broken = lambda p, x: model.apply(p, x) * jnp.log(x[:, :1] * 0)  # -inf*0
  with pytest.raises(FloatingPointError, match=r"meta-step 1;.*lower"):
    api.train_maml(broken, pool(), params=model.init(jax.random.key(0)),
                   meta_steps=20, meta_batch_size=4, progress=False)


@pytest.mark.parametrize("name", ["metasgd", "anil", "reptile"])
def test_any_algorithm_of_the_table_learns_regression(name):
  # loss="mse" on sine waves with a sampler: the query loss after adapting
  # falls during training for every algorithm the two flags cannot name.
  from metalearn.data import sinusoid
  model = ml.models.mlp(1, input_shape=(1,), hidden=(40, 40),
                        activation="relu")
  sampler = lambda key: sinusoid.sample_tasks(key, batch_size=8, k_shot=10,
                                              n_query=10)
  # Reptile keeps its own outer SGD (1.0 annealed to 0) and inner Adam at
  # 1e-3, which moves slowly: five inner steps, and a smaller gain asked.
  reptile = name == "reptile"
  result = api.train_maml(model, sampler, algorithm=name, loss="mse",
                          inner_lr=0.01, outer_lr=None if reptile else 0.003,
                          inner_steps=5 if reptile else 1, meta_steps=600,
                          progress=False)
  start, end = learned(result, window=100)
  assert end < (0.85 if reptile else 0.7) * start, (name, start, end)
  assert (ml.algorithms.get(name).per_element_lrs
          == (result.inner_lrs["head"]["kernel"].ndim == 3))


def test_algorithm_and_flags_do_not_mix():
  with pytest.raises(ValueError, match="algorithm='reptile' sets"):
    api.train_maml(helpers.tiny_model(), pool(), algorithm="reptile",
                   first_order=True, **FAST)
  with pytest.raises(ValueError, match="algorithm: .*valid: maml"):
    api.train_maml(helpers.tiny_model(), pool(), algorithm="not_an_algorithm",
                   **FAST)
  with pytest.raises(ValueError, match="loss='hinge' is unknown"):
    api.train_maml(helpers.tiny_model(), pool(), loss="hinge", **FAST)
  with pytest.raises(ValueError, match=r"outputs of shape \(6, 3\)"):
    api.train_maml(helpers.tiny_model(), pool(), loss="mse", **FAST)
