"""The write-up's three ``train_maml`` calls run as its users write them:
a flax model, an iterable of task batches, its keyword names, and a result
that unpacks into (trained model, meta-learner state, losses)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml
from metalearn import train_maml
from tests import helpers


class TinyNet(nn.Module):
  """A flax classifier as a user writes one: features -> n_way logits."""
  n_way: int = helpers.N_WAY

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(16)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.n_way)(x)


def _loader(num_batches=20, tasks_per_batch=4):
  """A re-iterable list of Task batches, as a DataLoader yields them."""
  keys = jax.random.split(jax.random.key(7), num_batches)
  return [helpers.tiny_tasks(k, num_tasks=tasks_per_batch) for k in keys]


@pytest.mark.parametrize("first_order,plus_plus", [(False, False),
                                                   (True, False),
                                                   (False, True)])
def test_the_writeups_call_runs_as_written(first_order, plus_plus):
  model = TinyNet()
  train_loader = _loader()
  model, maml, losses = train_maml(model=model, task_dataloader=train_loader, inner_lr=0.01, outer_lr=0.001, inner_steps=5, first_order=first_order, plus_plus=plus_plus)  # noqa: E501  (verbatim)

  assert isinstance(model, ml.TrainedModel)
  assert isinstance(maml, ml.MetaLearner)
  assert losses.shape == (1000,) and np.all(np.isfinite(losses))
  assert int(maml.state.step) == 1000
  # The trained model is callable on a task's inputs.
  x = train_loader[0].support_x[0]
  assert model(x).shape == (x.shape[0], helpers.N_WAY)
  # Meta-training helped: the last 100 losses below the first 100.
  assert losses[-100:].mean() < losses[:100].mean() - 0.02
  lrs = np.concatenate([np.ravel(v) for v in jax.tree.leaves(maml.inner_lrs)])
  if plus_plus:
    assert not np.allclose(lrs, 0.01)  # MAML++ learns its rates.
    assert maml.step_losses.shape == (1000, 5)
  else:
    np.testing.assert_allclose(lrs, 0.01)
    assert maml.step_losses.shape == (1000, 1)
  assert maml.config.algorithm == ml.algorithms.from_flags(
      first_order, plus_plus).name


def test_the_result_keeps_its_named_fields():
  result = train_maml(TinyNet(), _loader(4), inner_steps=1, meta_steps=4,
                      progress=False)
  assert result.params is result.model.params
  assert result.state is result.maml.state
  assert result.inner_lrs is result.maml.inner_lrs
  assert result.losses.shape == (4,) and result.stats.meta_steps == 4
  assert result.step_losses.shape == (4, 1)


def test_tasks_are_given_once():
  with pytest.raises(ValueError, match="task_dataloader"):
    train_maml(TinyNet(), _loader(2), task_dataloader=_loader(2),
               meta_steps=1, progress=False)
  with pytest.raises(ValueError, match="neither"):
    train_maml(TinyNet(), meta_steps=1, progress=False)
