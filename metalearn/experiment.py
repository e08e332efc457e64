"""Everything built from a config before the loop runs.

:func:`build_experiment` loads the data and builds the model, outer
optimizer, fixed task sets and phase plan of a config; :func:`step_builder`
turns it into jitted meta-steps; :func:`evaluate_meta` scores meta-parameters
on a task set. :mod:`metalearn.train` runs the loop on top of these.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from metalearn import algorithms
from metalearn import config_checks
from metalearn import core
from metalearn import evaluate as evaluate_lib
from metalearn import precision
from metalearn import schedules
from metalearn import step as step_lib
from metalearn import trainer
from metalearn.data import episodes
from metalearn.data import omniglot
from metalearn.models import conv4
from metalearn.models import Model
from metalearn.types import PyTree, Task


def build_model(config: ml_collections.ConfigDict,
                bn_steps: Optional[int] = None) -> Model:
  """Conv-4 computing in ``config.compute_dtype`` (float32 parameters).

  ``bn_steps`` defaults to the algorithm's: one batch-norm affine per
  training inner step for MAML++ (test steps beyond them reuse the last
  one), else one shared affine.
  """
  if bn_steps is None:
    per_step = algorithms.get(config.algorithm).per_step_bn
    bn_steps = config.inner_steps if per_step else 0
  model = conv4(config.n_way, filters=config.filters, bn_steps=bn_steps,
                conv_impl=config.conv_impl)
  return model._replace(
      apply=precision.compute_in(model.apply, config.compute_dtype))


def initial_params(config: ml_collections.ConfigDict, model: Model) -> PyTree:
  """The same initial weights for every algorithm of a config: MAML++'s
  per-step batch-norm rows start as copies of the shared affine."""
  key = jax.random.key(config.seed)
  shared = build_model(config, bn_steps=0).init(key)
  shapes = jax.eval_shape(model.init, key)
  return jax.tree.map(lambda p, s: jnp.broadcast_to(p, s.shape), shared,
                      shapes)


def build_inner_lrs(config: ml_collections.ConfigDict, params: PyTree
                   ) -> PyTree:
  """[inner_steps] rate per tensor for every leaf the inner loop adapts.

  Batch-norm affines are frozen unless ``config.adapt_norm``; a head-only
  algorithm (ANIL) adapts only the classifier head, so no inner gradient is
  ever computed for the body.
  """
  frozen = () if config.adapt_norm else ("norm",)
  if algorithms.get(config.algorithm).head_only:
    frozen = ("conv", "norm")
  return core.fixed_inner_lrs(params, config.inner_lr, config.inner_steps,
                              frozen=frozen)


def build_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Adam with a constant or cosine-annealed outer learning rate."""
  if config.lr_schedule == "cosine":
    lr = optax.cosine_decay_schedule(
        config.outer_lr, config.meta_steps,
        alpha=config.outer_lr_min / config.outer_lr)
  else:
    lr = config.outer_lr
  return optax.adam(lr)


def build_plan(config: ml_collections.ConfigDict) -> schedules.PhasePlan:
  """The phases of the config's algorithm (see :mod:`metalearn.schedules`)."""
  algorithm = algorithms.get(config.algorithm)
  return schedules.phase_plan(
      meta_steps=config.meta_steps, steps_per_epoch=config.steps_per_epoch,
      first_order=algorithm.first_order,
      multi_step_loss=algorithm.multi_step_loss,
      msl_epochs=config.msl_epochs, inner_steps=config.inner_steps,
      first_order_epochs=(config.first_order_epochs
                          if algorithm.anneals_order else 0))


def build_task_fn(config: ml_collections.ConfigDict):
  """(key, data) -> Task batch: fresh episodes, or a draw from a fixed pool."""
  if config.train_pool:
    return lambda key, pool: episodes.sample_from_pool(
        key, pool, config.meta_batch_size)
  return lambda key, images: episodes.sample_tasks(
      key, images, n_way=config.n_way, k_shot=config.k_shot,
      n_query=config.n_query, batch_size=config.meta_batch_size,
      rotate=config.rotate)


class Experiment(NamedTuple):
  """Everything built from a config before training starts."""
  model: Model
  optimizer: optax.GradientTransformation
  train_data: Any  # uint8 images [C, 20, 28, 28] or a Task pool
  val_tasks: Optional[Task]
  test_tasks: Task
  plan: schedules.PhasePlan


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Loads the data and builds model, optimizer and fixed task sets."""
  cache_dir = omniglot.ensure_cache(config.omniglot_dir or None,
                                    config.cache_dir or None, progress=True)
  splits = omniglot.load_splits(config.dataset, cache_dir)
  config_checks.check_against_splits(config, splits)
  sizes = dict(n_way=config.n_way, k_shot=config.k_shot)
  train = jnp.asarray(splits.train)
  if config.train_pool:
    train = episodes.fixed_tasks(config.seed + 1, train,
                                 num_tasks=config.train_pool,
                                 n_query=config.n_query, rotate=config.rotate,
                                 **sizes)
  val = (episodes.fixed_tasks(config.seed + 2, jnp.asarray(splits.val),
                              num_tasks=config.val_tasks,
                              n_query=config.eval_n_query, **sizes)
         if config.val_tasks else None)
  test = episodes.fixed_tasks(config.seed + 3, jnp.asarray(splits.test),
                              num_tasks=config.test_tasks,
                              n_query=config.eval_n_query, **sizes)
  return Experiment(build_model(config), build_optimizer(config), train, val,
                    test, build_plan(config))


def initial_state(config: ml_collections.ConfigDict,
                  exp: Experiment) -> step_lib.MetaState:
  params = initial_params(config, exp.model)
  return step_lib.init_meta_state(
      params, build_inner_lrs(config, params), exp.optimizer,
      learn_inner_lrs=algorithms.get(config.algorithm).learn_inner_lrs)


def step_builder(config: ml_collections.ConfigDict,
                 exp: Experiment) -> trainer.StepBuilder:
  """``(phase, count) -> jitted meta-step`` for :func:`trainer.run`."""
  algorithm = algorithms.get(config.algorithm)
  weights_fn = schedules.msl_weights_fn(config.inner_steps, config.msl_epochs,
                                        config.steps_per_epoch)

  def build(phase: schedules.Phase, count: int):
    return step_lib.make_meta_step(
        exp.model.apply, exp.optimizer, build_task_fn(config),
        weights_fn if phase.multi_step_loss else None,
        first_order=phase.first_order,
        learn_inner_lrs=algorithm.learn_inner_lrs,
        step_aware=exp.model.step_aware, remat=config.remat,
        unroll=config.unroll, batching=config.batching, steps_per_call=count)
  return build


def evaluate_meta(config: ml_collections.ConfigDict, exp: Experiment, meta,
                  tasks: Task) -> evaluate_lib.EvalResult:
  """Adapts ``meta`` to ``tasks`` with ``config.eval_inner_steps`` steps."""
  return evaluate_lib.evaluate(
      exp.model.apply, meta.params, meta.inner_lrs, tasks,
      inner_steps=config.eval_inner_steps, step_aware=exp.model.step_aware,
      batching=config.batching, chunk_size=config.eval_chunk_size)
