"""Meta-training and evaluation on Omniglot: ``train_and_evaluate``.

One call trains from ``config`` in ``workdir`` and evaluates on the test split.
It resumes by itself from the latest checkpoint in ``workdir``; a resumed run
ends with the same parameters as an uninterrupted one (keys are derived from
the step, never threaded). Outputs in ``workdir``: ``config.json``,
``metrics.jsonl`` (training and validation rows), ``checkpoints/`` (latest),
``best/`` (best by validation accuracy), ``eval.json``.
"""

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from metalearn import checkpoints
from metalearn import config_checks
from metalearn import core
from metalearn import evaluate as evaluate_lib
from metalearn import metrics_log
from metalearn import precision
from metalearn import schedules
from metalearn import step as step_lib
from metalearn.data import episodes
from metalearn.data import omniglot
from metalearn.models import conv4
from metalearn.models import Model
from metalearn.types import Array, PyTree, Task


def build_model(config: ml_collections.ConfigDict) -> Model:
  """Conv-4 with per-step batch-norm affines when ``config.per_step_bn``,
  computing in ``config.compute_dtype`` (parameters stay float32)."""
  steps = max(config.inner_steps, config.eval_inner_steps)
  model = conv4(config.n_way, filters=config.filters,
                per_step_bn=steps if config.per_step_bn else 0,
                conv_impl=config.conv_impl)
  return model._replace(
      apply=precision.compute_in(model.apply, config.compute_dtype))


def build_inner_lrs(config: ml_collections.ConfigDict, params: PyTree) -> PyTree:
  """[inner_steps] rate per tensor for every leaf the inner loop adapts.

  Batch-norm affines are frozen unless ``config.adapt_norm``; with
  ``config.inner_adapt == "head"`` (ANIL) only the classifier head adapts, so
  no inner gradient is ever computed for the body.
  """
  frozen = () if config.adapt_norm else ("norm",)
  if config.inner_adapt == "head":
    frozen = ("conv", "norm")
  return core.fixed_inner_lrs(params, config.inner_lr, config.inner_steps,
                              frozen=frozen)


def build_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Adam with a constant or cosine-annealed outer learning rate."""
  if config.lr_schedule == "cosine":
    lr = optax.cosine_decay_schedule(
        config.outer_lr, config.num_steps,
        alpha=config.outer_lr_min / config.outer_lr)
  else:
    lr = config.outer_lr
  return optax.adam(lr)


def step_weights_fn(config: ml_collections.ConfigDict
                   ) -> Optional[Callable[[Array], Array]]:
  """meta_step -> [inner_steps] MSL weights, or None: the last step alone.

  None (no multi-step loss, or the annealing is over) lets the step run the
  query set once, after the last inner step, instead of after every step.
  """
  if config.msl_epochs > 0:
    return lambda s: schedules.msl_weights(
        config.inner_steps, s // config.iters_per_epoch, config.msl_epochs)
  return None


def msl_end(config: ml_collections.ConfigDict) -> int:
  """The meta-step from which the multi-step loss weighs only the last step."""
  return min(config.num_steps, config.msl_epochs * config.iters_per_epoch)


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
  learn_inner_lrs: bool


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
                    test, config.learn_inner_lrs)


def _boundaries(config: ml_collections.ConfigDict) -> list[int]:
  """Steps where a chunk of meta-steps must end (eval, save, order switch)."""
  marks = {config.num_steps}
  for every in (config.eval_every, config.checkpoint_every):
    if every:
      marks.update(range(every, config.num_steps, every))
  if config.first_order_epochs:
    marks.add(min(config.num_steps,
                  config.first_order_epochs * config.iters_per_epoch))
  if config.msl_epochs:
    marks.add(msl_end(config))
  return sorted(marks)


class Trainer:
  """Compiles (and caches) the meta-step variants one run needs.

  Keyed by (first_order, multi_step, steps_per_call): derivative-order
  annealing needs two orders, the multi-step loss is dropped (and with it the
  query passes after the early inner steps) once its annealing ends, and the
  last chunk before an eval or save may be shorter.
  """

  def __init__(self, config, experiment: Experiment):
    self._config = config
    self._exp = experiment
    self._steps = {}

  def is_compiled(self, first_order: bool, multi_step: bool,
                  count: int) -> bool:
    return (first_order, multi_step, count) in self._steps

  def __call__(self, state, first_order: bool, multi_step: bool, count: int):
    key = (first_order, multi_step, count)
    if key not in self._steps:
      c, exp = self._config, self._exp
      self._steps[key] = step_lib.make_meta_step(
          exp.model.apply, exp.optimizer, build_task_fn(c),
          step_weights_fn(c) if multi_step else None,
          first_order=first_order,
          learn_inner_lrs=exp.learn_inner_lrs,
          step_aware=exp.model.step_aware, remat=c.remat, unroll=c.unroll,
          batching=c.batching,
          steps_per_call=count)
    return self._steps[key](state, self._exp.train_data,
                            jax.random.key(self._config.seed))


def _first_order_at(config, step: int) -> bool:
  """Derivative-order annealing: first order for the first E epochs."""
  if config_checks.ALGORITHMS[config.algorithm].first_order:
    return True
  return step < config.first_order_epochs * config.iters_per_epoch


def _multi_step_at(config, step: int) -> bool:
  """Whether the multi-step loss still weighs the early inner steps."""
  return step < msl_end(config)


def _evaluate(config, exp: Experiment, meta, tasks: Task, steps: int):
  return evaluate_lib.evaluate(exp.model.apply, meta.params, meta.inner_lrs,
                               tasks, num_steps=steps,
                               step_aware=exp.model.step_aware,
                               batching=config.batching)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | os.PathLike) -> dict:
  """Meta-trains, validates, checkpoints, resumes and tests.

  Args:
    config: an experiment config (see ``experiments/configs/``); checked by
      :func:`metalearn.config_checks.validate_config` before anything
      compiles.
    workdir: output directory; an existing run there is resumed.

  Returns:
    The summary written to ``workdir/eval.json``.
  """
  config_checks.validate_config(config)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  exp = build_experiment(config)
  params = exp.model.init(jax.random.key(config.seed))
  state = step_lib.init_meta_state(params, build_inner_lrs(config, params),
                                   exp.optimizer,
                                   learn_inner_lrs=exp.learn_inner_lrs)
  ckpt = checkpoints.Checkpointer(workdir)
  state = ckpt.restore_latest(state)
  start = int(state.step)
  trainer = Trainer(config, exp)
  writer = metrics_log.MetricsWriter(workdir)
  tasks_per_step = config.meta_batch_size
  bar = tqdm(total=config.num_steps, initial=start, desc=config.algorithm,
             disable=not config.progress, dynamic_ncols=True)
  step, train_time, out_of_time = start, 0.0, False
  for mark in _boundaries(config):
    while step < mark and not out_of_time:
      first_order = _first_order_at(config, step)
      multi_step = _multi_step_at(config, step)
      count = min(config.steps_per_call, mark - step)
      compiles = not trainer.is_compiled(first_order, multi_step, count)
      t0 = time.perf_counter()
      state, out = trainer(state, first_order, multi_step, count)
      loss = np.asarray(out.loss).reshape(-1)
      elapsed = time.perf_counter() - t0
      train_time += elapsed
      if not np.all(np.isfinite(loss)):
        bad = step + int(np.argmin(np.isfinite(loss)))
        raise FloatingPointError(
            f"meta-loss became {loss[~np.isfinite(loss)][0]} at meta-step "
            f"{bad}; stopping. The last good checkpoint in "
            f"{workdir / 'checkpoints'} is intact (lower outer_lr or "
            "inner_lr and resume).")
      step += count
      # [count, Q] or [Q]: the last column is the last inner step.
      acc = float(np.asarray(out.step_accuracy)[..., -1].mean())
      row = {"loss": float(loss.mean()), "accuracy": acc,
             "grad_norm": float(np.asarray(out.grad_norm).mean()),
             "tasks_per_s": count * tasks_per_step / max(elapsed, 1e-9),
             "seconds": elapsed, "compiled": compiles,
             "first_order": first_order, "multi_step_loss": multi_step}
      writer.write(step, row)
      bar.update(count)
      bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{acc:.3f}",
                      tasks_s=f"{row['tasks_per_s']:.0f}")
      out_of_time = 0 < config.max_train_seconds < train_time
    if exp.val_tasks is not None and config.eval_every and (
        step % config.eval_every == 0 or step == config.num_steps
        or out_of_time):
      val = _evaluate(config, exp, state.meta, exp.val_tasks,
                      config.eval_inner_steps)
      writer.write(step, {"val_accuracy": val.accuracy, "val_ci95": val.ci95,
                          "val_loss": val.loss})
      ckpt.save_best(step, state, val.accuracy)
    if (config.checkpoint_every and step % config.checkpoint_every == 0) or (
        step == config.num_steps or out_of_time):
      ckpt.save_latest(step, state)
    if out_of_time:
      print(f"max_train_seconds={config.max_train_seconds} reached after "
            f"{step} meta-steps; evaluating. Rerun to continue training.")
      break
  bar.close()
  writer.close()
  ckpt.wait()
  final_meta = state.meta
  best_meta = ckpt.restore_best(state)
  result = _evaluate(config, exp, best_meta.meta if best_meta else final_meta,
                     exp.test_tasks, config.eval_inner_steps)
  summary = {
      "algorithm": config.algorithm,
      "dataset": config.dataset,
      "n_way": config.n_way, "k_shot": config.k_shot,
      "meta_steps": step,
      "train_seconds_this_run": train_time,
      "stopped_by_time_budget": out_of_time,
      "used_best_checkpoint": best_meta is not None,
      "test": result.summary(),
      "inner_lrs": jax.tree.map(lambda a: np.asarray(a).tolist(),
                                final_meta.inner_lrs),
  }
  (workdir / "eval.json").write_text(json.dumps(summary, indent=2))
  print(evaluate_lib.format_table(result, title=f"{config.algorithm} test"))
  return summary
