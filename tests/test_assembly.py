"""One assembly path: ``train_maml(algorithm=X, ...)`` and the config ``X``
run by ``train_and_evaluate`` train the same thing, for every algorithm."""

import jax
import numpy as np
import pytest

import metalearn as ml
from metalearn import algorithms
from metalearn import build
from metalearn import configs
from metalearn import runs
from metalearn import train


def tiny_config(name: str):
  c = configs.for_algorithm(name)
  c.dataset = "synthetic"
  c.n_way, c.k_shot, c.n_query, c.eval_n_query = 3, 1, 2, 2
  c.train_pool, c.meta_batch_size = 8, 4
  # The builders are the same for every model; a small MLP compiles fast.
  c.model, c.hidden = "mlp", (8,)
  c.adapt_norm = True  # train_maml adapts every leaf unless frozen says
  c.inner_steps, c.eval_inner_steps, c.inner_lr = 2, 2, 0.1
  c.meta_steps, c.steps_per_call, c.steps_per_epoch = 3, 1, 1
  c.msl_epochs, c.first_order_epochs = 2, 1  # every MAML++ phase occurs
  c.val_tasks, c.eval_every, c.test_tasks = 0, 0, 4
  c.checkpoint_every, c.progress = 0, False
  return c


@pytest.mark.parametrize("name", list(algorithms.ALGORITHMS))
def test_train_maml_and_the_config_train_the_same(name, tmp_path):
  config = tiny_config(name)
  train.train_and_evaluate(config, tmp_path)
  by_config = runs.restore(tmp_path, "latest")
  first_loss = runs.read_metrics(tmp_path).train[0]["loss"]

  exp = build.build_experiment(config)
  result = ml.train_maml(
      exp.model, exp.train_data, params=build.initial_params(config,
                                                             exp.model),
      algorithm=name, inner_lr=config.inner_lr,
      inner_steps=config.inner_steps, meta_steps=config.meta_steps,
      meta_batch_size=config.meta_batch_size, msl_epochs=config.msl_epochs,
      first_order_epochs=config.first_order_epochs,
      steps_per_epoch=config.steps_per_epoch, seed=config.seed,
      progress=False)

  np.testing.assert_allclose(result.losses[0], first_loss, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(result.maml.state.meta),
                       jax.tree.leaves(by_config.meta)):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
  assert result.maml.config.algorithm == name
