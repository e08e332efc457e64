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
from metalearn import distributed
from metalearn import evaluate as evaluate_lib
from metalearn import objectives
from metalearn import precision
from metalearn import schedules
from metalearn import sharding
from metalearn import step as step_lib
from metalearn import trainer
from metalearn.data import datasets
from metalearn.data import episodes
from metalearn.data import sinusoid
from metalearn.models import conv4
from metalearn.models import mlp
from metalearn.models import Model
from metalearn.models import resnet12
from metalearn.types import PyTree, Task


def input_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """One input's shape for ``config.dataset``: Omniglot's [28, 28, 1],
  mini-ImageNet's [84, 84, 3], a sinusoid's [1]."""
  return INPUT_SHAPES.get(config.dataset, (28, 28, 1))


INPUT_SHAPES = {"mini_imagenet": (84, 84, 3), "sinusoid": (1,)}


def objective(config: ml_collections.ConfigDict) -> objectives.Objective:
  """The loss of both loops and the metric (``config.loss``)."""
  return objectives.get(config.loss)


def build_model(config: ml_collections.ConfigDict,
                bn_steps: Optional[int] = None) -> Model:
  """``config.model`` computing in ``config.compute_dtype`` (float32
  parameters): conv-4, ResNet-12 or an MLP.

  ``bn_steps`` defaults to the algorithm's: one batch-norm affine per
  training inner step for MAML++ (test steps beyond them reuse the last
  one), else one shared affine. Outputs: ``n_way`` logits, or one value per
  input for a loss without a metric (regression).
  """
  if bn_steps is None:
    per_step = algorithms.get(config.algorithm).per_step_bn
    bn_steps = config.inner_steps if per_step else 0
  shape = input_shape(config)
  n_out = config.n_way if objective(config).integer_targets else 1
  if config.model == "mlp":
    model = mlp(n_out, input_shape=shape, hidden=tuple(config.hidden),
                activation=config.activation)
  elif config.model == "resnet12":
    model = resnet12(n_out, input_shape=shape, widths=tuple(config.widths),
                     bn_steps=bn_steps, conv_impl=config.conv_impl,
                     remat=config.block_remat)
  else:
    model = conv4(n_out, input_shape=shape, filters=config.filters,
                  bn_steps=bn_steps, conv_impl=config.conv_impl)
  compute = lambda f: f and precision.compute_in(f, config.compute_dtype)
  return model._replace(apply=compute(model.apply), body=compute(model.body))


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
  """The inner rates the algorithm starts from, all ``config.inner_lr``.

  One rate per tensor per step, or per element (Meta-SGD). Batch-norm
  affines are frozen unless ``config.adapt_norm``; a head-only algorithm
  (ANIL) adapts only the ``head``, so no inner gradient is ever computed for
  the body.
  """
  algorithm = algorithms.get(config.algorithm)
  frozen = () if config.adapt_norm else ("norm",)
  if algorithm.head_only:
    frozen = core.frozen_outside_head(params)
  return core.fixed_inner_lrs(params, config.inner_lr, config.inner_steps,
                              per_element=algorithm.per_element_lrs,
                              frozen=frozen)


def _outer_lr(config: ml_collections.ConfigDict):
  if config.lr_schedule == "cosine":
    return optax.cosine_decay_schedule(
        config.outer_lr, config.meta_steps,
        alpha=config.outer_lr_min / config.outer_lr)
  if config.lr_schedule == "linear":
    return optax.linear_schedule(config.outer_lr, config.outer_lr_min,
                                 config.meta_steps)
  return config.outer_lr


def build_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Adam or SGD (``config.outer_optimizer``) with a constant, cosine- or
  linearly-annealed outer rate. SGD at rate epsilon on Reptile's move is
  the paper's interpolation."""
  if config.outer_optimizer == "sgd":
    return optax.sgd(_outer_lr(config))
  return optax.adam(_outer_lr(config))


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
  """(key, data) -> Task batch: fresh episodes (or sine tasks), or a draw
  from a fixed pool."""
  if config.train_pool:
    return lambda key, pool: episodes.sample_from_pool(
        key, pool, config.meta_batch_size)
  if config.dataset == "sinusoid":
    return lambda key, _: sinusoid.sample_tasks(
        key, batch_size=config.meta_batch_size, k_shot=config.k_shot,
        n_query=config.n_query)
  return lambda key, images: episodes.sample_tasks(
      key, images, n_way=config.n_way, k_shot=config.k_shot,
      n_query=config.n_query, batch_size=config.meta_batch_size,
      rotate=config.rotate)


class Experiment(NamedTuple):
  """Everything built from a config before training starts."""
  model: Model
  optimizer: optax.GradientTransformation
  train_data: Any  # uint8 images [C, D, H, W(, 3)], a Task pool, or [] (sine)
  val_tasks: Optional[Task]
  test_tasks: Task
  plan: schedules.PhasePlan


def _sinusoid_tasks(config: ml_collections.ConfigDict):
  """(train data, val tasks, test tasks): sine tasks need no stored data."""
  fixed = lambda seed, num: sinusoid.fixed_tasks(
      seed, num_tasks=num, k_shot=config.k_shot,
      n_query=config.eval_n_query)
  val = fixed(config.seed + 2, config.val_tasks) if config.val_tasks else None
  return (jnp.zeros((0,), jnp.float32), val,
          fixed(config.seed + 3, config.test_tasks))


def _image_tasks(config: ml_collections.ConfigDict):
  """(train images or pool, val tasks, test tasks) of an image dataset."""
  splits = datasets.load(config)
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
  return train, val, test


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Loads the data and builds model, optimizer and fixed task sets."""
  make = _sinusoid_tasks if config.dataset == "sinusoid" else _image_tasks
  train, val, test = make(config)
  return Experiment(build_model(config), build_optimizer(config), train, val,
                    test, build_plan(config))


def body_head(config: ml_collections.ConfigDict,
              model: Model) -> Optional[core.BodyHead]:
  """The model split when only the head adapts and ``config.fast_head``:
  ANIL's body then runs once per task, not once per inner step."""
  if (algorithms.get(config.algorithm).head_only and config.fast_head
      and model.body is not None and not model.step_aware):
    return core.BodyHead(model.body, model.head)
  return None


def algorithm_options(config: ml_collections.ConfigDict,
                      model: Model) -> dict:
  """The meta-step keywords that the algorithm and loss set."""
  return dict(objective=objective(config),
              body_head=body_head(config, model),
              outer=algorithms.get(config.algorithm).outer,
              reptile_inner=config.reptile_inner,
              reptile_adam_lr=config.reptile_adam_lr)


def initial_state(config: ml_collections.ConfigDict,
                  exp: Experiment) -> step_lib.MetaState:
  params = initial_params(config, exp.model)
  return step_lib.init_meta_state(
      params, build_inner_lrs(config, params), exp.optimizer,
      learn_inner_lrs=algorithms.get(config.algorithm).learn_inner_lrs)


def step_builder(config: ml_collections.ConfigDict, exp: Experiment,
                 mesh: Optional[jax.sharding.Mesh] = None
                ) -> trainer.StepBuilder:
  """``(phase, count) -> jitted meta-step`` for :func:`trainer.run`.

  With ``mesh`` (:func:`metalearn.distributed.training_mesh`) the task batch
  is split over its devices. Fresh episodes are drawn by global task index
  (:func:`metalearn.distributed.tasks_by_index`), so the tasks do not depend
  on how many devices or processes share them.
  """
  algorithm = algorithms.get(config.algorithm)
  weights_fn = schedules.msl_weights_fn(config.inner_steps, config.msl_epochs,
                                        config.steps_per_epoch)
  split = None if mesh is None else sharding.task_sharding(mesh)
  task_fn = build_task_fn(config)
  if not config.train_pool:
    single = ml_collections.ConfigDict(config.to_dict())
    single.meta_batch_size = 1
    task_fn = distributed.tasks_by_index(build_task_fn(single),
                                         config.meta_batch_size, split)

  def build(phase: schedules.Phase, count: int):
    return step_lib.make_meta_step(
        exp.model.apply, exp.optimizer, task_fn,
        weights_fn if phase.multi_step_loss else None,
        first_order=phase.first_order,
        learn_inner_lrs=algorithm.learn_inner_lrs,
        step_aware=exp.model.step_aware, remat=config.remat,
        unroll=config.unroll, batching=config.batching, steps_per_call=count,
        task_sharding=split, **algorithm_options(config, exp.model))
  return build


def evaluate_meta(config: ml_collections.ConfigDict, exp: Experiment, meta,
                  tasks: Task) -> evaluate_lib.EvalResult:
  """Adapts ``meta`` to ``tasks`` with ``config.eval_inner_steps`` steps."""
  return evaluate_lib.evaluate(
      exp.model.apply, meta.params, meta.inner_lrs, tasks,
      inner_steps=config.eval_inner_steps, step_aware=exp.model.step_aware,
      batching=config.batching, chunk_size=config.eval_chunk_size,
      objective=objective(config), body_head=body_head(config, exp.model),
      adam_lr=_eval_adam_lr(config))


def _eval_adam_lr(config: ml_collections.ConfigDict) -> Optional[float]:
  """Reptile trained with inner Adam adapts with it at test time too."""
  uses_adam = (algorithms.get(config.algorithm).outer == "reptile"
               and config.reptile_inner == "adam")
  return config.reptile_adam_lr if uses_adam else None
