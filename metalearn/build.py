"""Everything built from a config before the loop runs.

:func:`build_experiment` loads the data of ``config.dataset`` (the dataset
registry, :mod:`metalearn.data.registry`) and builds the model of
``config.model`` (the model registry, :mod:`metalearn.models.registry`),
the outer optimizer, fixed task sets and phase plan; :func:`step_builder`
turns it into jitted meta-steps; :func:`evaluate_meta` scores
meta-parameters on a task set, :func:`evaluate_ensemble` several together.
:mod:`metalearn.train` runs the loop on top of these, and
:func:`metalearn.train_maml` builds its run from the same functions, so a
config and the keywords that say the same train the same.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from metalearn import algorithms
from metalearn import core
from metalearn import distributed
from metalearn import ensemble as ensemble_lib
from metalearn import evaluate as evaluate_lib
from metalearn import inner_lrs as inner_lrs_lib
from metalearn import masking
from metalearn import objectives
from metalearn import precision
from metalearn import proto
from metalearn import rules
from metalearn import schedules
from metalearn import sharding
from metalearn import step as step_lib
from metalearn import task_copies
from metalearn import trainer
from metalearn.data import augment
from metalearn.data import registry as datasets
from metalearn.data import shapes
from metalearn.models import Model
from metalearn.models import resolve_conv_impl
from metalearn.models import registry as models
from metalearn.types import PyTree, Task


def input_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """One input's shape for ``config.dataset``, as its registry entry says
  (Omniglot's (28, 28, 1), mini-ImageNet's (84, 84, 3), a sinusoid's (1,))."""
  return tuple(datasets.get(config.dataset).input_shape(config))


def objective(config: ml_collections.ConfigDict) -> objectives.Objective:
  """The loss of both loops and the metric (``config.loss``)."""
  return objectives.get(config.loss)


def build_model(config: ml_collections.ConfigDict,
                bn_steps: Optional[int] = None) -> Model:
  """``config.model`` (a name of the model registry) computing in
  ``config.compute_dtype`` (float32 parameters).

  ``bn_steps`` defaults to the algorithm's: one batch-norm affine per
  training inner step for MAML++ (test steps beyond them reuse the last
  one), else one shared affine. Outputs: ``n_way`` logits, or one value per
  input for a loss without a metric (regression).
  """
  if bn_steps is None:
    per_step = algorithms.get(config.algorithm).per_step_bn
    bn_steps = config.inner_steps if per_step else 0
  n_out = config.n_way if objective(config).integer_targets else 1
  model = models.get(config.model).build(
      config, models.Shape(n_out, input_shape(config), bn_steps))
  compute = lambda f: f and precision.compute_in(f, config.compute_dtype)
  return model._replace(apply=compute(model.apply), body=compute(model.body))


def initial_params(config: ml_collections.ConfigDict, model: Model) -> PyTree:
  """The same initial weights for every algorithm of a config: MAML++'s
  per-step batch-norm rows start as copies of the shared affine."""
  key = jax.random.key(config.seed)
  # One compiled program: run op by op, init compiles each op on its own.
  shared = jax.jit(build_model(config, bn_steps=0).init)(key)
  shapes = jax.eval_shape(model.init, key)
  return jax.tree.map(lambda p, s: jnp.broadcast_to(p, s.shape), shared,
                      shapes)


def build_inner_lrs(config: ml_collections.ConfigDict, params: PyTree
                   ) -> PyTree:
  """The inner rates the algorithm starts from, all ``config.inner_lr``.

  One rate per tensor per step, or per element (Meta-SGD). Leaves whose
  path contains a ``config.frozen`` substring, and batch-norm affines
  unless ``config.adapt_norm``, are frozen; a head-only algorithm (ANIL)
  adapts only the ``head``, so no inner gradient is ever computed for the
  body.
  """
  algorithm = algorithms.get(config.algorithm)
  frozen = tuple(config.frozen) + (() if config.adapt_norm else ("norm",))
  if algorithm.head_only:
    frozen = inner_lrs_lib.outside_head(params)
  lrs = inner_lrs_lib.fixed_inner_lrs(
      params, config.inner_lr, config.inner_steps,
      per_element=algorithm.per_element_lrs, frozen=frozen)
  try:
    core.validate_inner_lrs(params, lrs)
  except ValueError as e:
    raise ValueError(f"config.frozen={tuple(config.frozen)!r}: {e}") from e
  return lrs


def inner_update(config: ml_collections.ConfigDict) -> rules.InnerUpdate:
  """How each task adapts (``config.inner_optimizer``, as the algorithm
  makes it), in training and at test time alike."""
  return algorithms.get(config.algorithm).inner_update(config)


def outer_rule(config: ml_collections.ConfigDict) -> rules.OuterRule:
  """What the outer optimizer follows: the algorithm's rule, with its
  hyperparameters from the config."""
  return algorithms.get(config.algorithm).outer_rule(config)


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
                          if algorithm.anneals_order else 0),
      shows_order=algorithm.differentiates_inner_loop)


class Experiment(NamedTuple):
  """Everything built from a config before training starts."""
  model: Model
  optimizer: optax.GradientTransformation
  train_data: Any  # uint8 images [C, D, H, W(, 3)], a Task pool, or [] (sine)
  val_tasks: Optional[Task]
  test_tasks: Task
  plan: schedules.PhasePlan


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Loads the data and builds model, optimizer and fixed task sets
  (``config.augment`` is checked first: it never touches these sets).

  Val and test tasks of fewer classes than the head (``eval_n_way <
  n_way``) carry a mask with every entry real, so that the head's other
  classes get no probability (:func:`metalearn.masking.full_mask`).
  """
  augment.check(config)
  parts = datasets.get(config.dataset).load(config)
  val, test = parts.val_tasks, parts.test_tasks
  if (objective(config).integer_targets
      and shapes.eval_n_way(config) < config.n_way):
    val = None if val is None else masking.full_mask(val)
    test = masking.full_mask(test)
  return Experiment(build_model(config), build_optimizer(config),
                    parts.train_data, val, test, build_plan(config))


def body_head(config: ml_collections.ConfigDict,
              model: Model) -> Optional[core.BodyHead]:
  """The model split when only the head adapts and ``config.fast_head``
  (ANIL's body then runs once per task, not once per inner step), or when
  the algorithm's inner update reads the body's features (prototypes)."""
  algorithm = algorithms.get(config.algorithm)
  if ((algorithm.head_only and config.fast_head) or algorithm.prototypes) and (
      model.body is not None and not model.step_aware):
    return core.BodyHead(model.body, model.head)
  return None


def meta_step_builder(config: ml_collections.ConfigDict, model: Model,
                      optimizer: optax.GradientTransformation, task_fn, *,
                      task_sharding=None,
                      objective_: Optional[objectives.Objective] = None
                     ) -> trainer.StepBuilder:
  """``(phase, count) -> jitted meta-step`` of ``config``'s algorithm on
  ``model``, drawing tasks with ``task_fn(key, data)``: the one place that
  turns an algorithm's row into meta-step keywords."""
  algorithm = algorithms.get(config.algorithm)
  weights_fn = schedules.msl_weights_fn(config.inner_steps, config.msl_epochs,
                                        config.steps_per_epoch)
  tile = task_copies.resolve(config.get("tile_params", "auto"),
                             resolve_conv_impl(config.conv_impl))

  def build(phase: schedules.Phase, count: int):
    return step_lib.make_meta_step(
        model.apply, optimizer, task_fn,
        weights_fn if phase.multi_step_loss else None,
        first_order=phase.first_order,
        learn_inner_lrs=algorithm.learn_inner_lrs,
        step_aware=model.step_aware, remat=config.remat,
        unroll=config.unroll, batching=config.batching, steps_per_call=count,
        task_sharding=task_sharding,
        objective=objective_ or objective(config),
        body_head=body_head(config, model), outer=outer_rule(config),
        inner=inner_update(config), tile_params=tile,
        cpu_llvm_level=config.get("cpu_llvm_level"))
  return build


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
  on how many devices or processes share them. ``config.augment`` then
  transforms them (:mod:`metalearn.data.augment`); evaluation tasks never.
  """
  split = None if mesh is None else sharding.task_sharding(mesh)
  dataset = datasets.get(config.dataset)
  task_fn = dataset.task_fn(config)
  if not config.train_pool:
    single = ml_collections.ConfigDict(config.to_dict())
    single.meta_batch_size = 1
    task_fn = distributed.tasks_by_index(dataset.task_fn(single),
                                         config.meta_batch_size, split)
  task_fn = augment.wrap(config, task_fn)  # Training tasks only.
  return meta_step_builder(config, exp.model, exp.optimizer, task_fn,
                           task_sharding=split)


def eval_inner_steps(config: ml_collections.ConfigDict) -> int:
  """Inner steps at test time: ``config.eval_inner_steps``, or 1 for an
  algorithm without an inner loop (ProtoNet), whose steps would only repeat
  the same prediction."""
  if not algorithms.get(config.algorithm).inner_loop:
    return 1
  return config.eval_inner_steps


def _wider(config: ml_collections.ConfigDict) -> bool:
  """Val and test tasks have more classes than the head."""
  return shapes.eval_n_way(config) > config.n_way


def _eval_options(config: ml_collections.ConfigDict, exp: Experiment
                 ) -> dict:
  """The evaluation keywords of ``config`` (one place for both below).

  Tasks of more classes than the head start from the prototype head of
  their width (:func:`metalearn.proto.at_width`), read from the body.
  """
  inner, split = inner_update(config), body_head(config, exp.model)
  if _wider(config):
    inner = proto.at_width(inner, shapes.eval_n_way(config))
    if split is None and exp.model.body is not None:
      split = core.BodyHead(exp.model.body, exp.model.head)
  return dict(
      inner_steps=eval_inner_steps(config), step_aware=exp.model.step_aware,
      batching=config.get("eval_batching", "auto"),
      chunk_size=config.eval_chunk_size,
      objective=objective(config), body_head=split, inner=inner)


def evaluate_meta(config: ml_collections.ConfigDict, exp: Experiment, meta,
                  tasks: Task) -> evaluate_lib.EvalResult:
  """Adapts ``meta`` to ``tasks`` with :func:`eval_inner_steps` steps of
  the config's inner update (from a prototype head when the tasks have more
  classes than the head: no ``task_initial_*`` scores then)."""
  return evaluate_lib.evaluate(exp.model.apply, meta.params, meta.inner_lrs,
                               tasks, initial=not _wider(config),
                               **_eval_options(config, exp))


def evaluate_ensemble(config: ml_collections.ConfigDict, exp: Experiment,
                      metas, tasks: Task, steps=()
                     ) -> ensemble_lib.EnsembleResult:
  """Adapts each of ``metas`` to ``tasks`` as :func:`evaluate_meta` does
  and scores their averaged prediction (:mod:`metalearn.ensemble`)."""
  return ensemble_lib.evaluate_ensemble(exp.model.apply, metas, tasks,
                                        steps=steps,
                                        **_eval_options(config, exp))
