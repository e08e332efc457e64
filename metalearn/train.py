"""Meta-training and evaluation from a config: ``train_and_evaluate``.

One call trains from ``config`` in ``workdir`` and evaluates on the test split,
running the one loop of :mod:`metalearn.trainer`. It resumes by itself from
the newest checkpoint in ``workdir`` that verifies; a resumed run ends with
the same parameters as an uninterrupted one (keys are derived from the step,
never threaded). Outputs in ``workdir``: ``config.json``, ``metrics.jsonl``
(training and validation rows), ``checkpoints/`` (latest), ``best/`` (best
by validation accuracy), ``eval.json``.
"""

import json
import os
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from metalearn import algorithms
from metalearn import checkpoints
from metalearn import config_checks
from metalearn import core
from metalearn import evaluate as evaluate_lib
from metalearn import metrics_log
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


def prepare_workdir(workdir: str | os.PathLike) -> Path:
  """Creates ``workdir``; ValueError naming it when that is impossible."""
  path = Path(workdir)
  if path.exists() and not path.is_dir():
    raise ValueError(f"workdir={str(workdir)!r} is a file, not a directory.")
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write_test"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise ValueError(f"workdir={str(workdir)!r} cannot be created or "
                     f"written: {e.strerror or e}.") from e
  return path


def _train_row(chunk: trainer.Chunk, tasks_per_step: int) -> dict:
  out, count = chunk.output, chunk.end - chunk.start
  return {"loss": float(np.mean(out.loss)),
          "accuracy": float(np.mean(out.step_accuracy[..., -1])),
          "last_step_loss": float(np.mean(out.step_loss[..., -1])),
          "grad_norm": float(np.mean(out.grad_norm)),
          "tasks_per_s": count * tasks_per_step / max(chunk.seconds, 1e-9),
          "seconds": chunk.seconds, "compiled": chunk.compiled,
          "first_order": chunk.phase.first_order,
          "multi_step_loss": chunk.phase.multi_step_loss}


def _nan_hint(ckpt: checkpoints.Checkpointer, workdir: Path):
  def hint() -> str:
    step = ckpt.latest_step()
    if step is None:
      return ("No checkpoint was written yet: lower outer_lr or inner_lr "
              "and start again.")
    return (f"The last checkpoint (meta-step {step}) in "
            f"{workdir / 'checkpoints'} was saved before this: lower "
            "outer_lr or inner_lr and rerun to resume from it.")
  return hint


def _marks(config: ml_collections.ConfigDict) -> list[int]:
  marks = set()
  for every in (config.eval_every, config.checkpoint_every):
    if every:
      marks.update(range(every, config.meta_steps, every))
  return sorted(marks)


def _on_mark(config, exp: Experiment, ckpt: checkpoints.Checkpointer,
             writer: metrics_log.MetricsWriter):
  """Validation and checkpoints at the marks, the end and an early stop."""
  def on_mark(step: int, state: step_lib.MetaState, stop: str) -> None:
    last = step == config.meta_steps or stop != trainer.DONE
    if exp.val_tasks is not None and config.eval_every and (
        step % config.eval_every == 0 or last):
      val = evaluate_meta(config, exp, state.meta, exp.val_tasks)
      writer.write(step, {"val_accuracy": val.accuracy, "val_ci95": val.ci95,
                          "val_loss": val.loss})
      ckpt.save_best(step, state, val.accuracy)
    if last or (config.checkpoint_every and
                step % config.checkpoint_every == 0):
      ckpt.save_latest(step, state)
  return on_mark


def _summary(config, result: trainer.RunResult, test, used_best: bool,
             start: int) -> dict:
  step = int(result.state.step)
  tasks = (step - start) * config.meta_batch_size
  return {
      "algorithm": config.algorithm,
      "dataset": config.dataset,
      "n_way": config.n_way, "k_shot": config.k_shot,
      "meta_steps": step,
      "resumed_from": start,
      "train_seconds_this_run": result.train_seconds,
      "compile_seconds_this_run": result.compile_seconds,
      "tasks_per_second": (tasks / result.train_seconds
                           if result.train_seconds > 0 else None),
      "xla_temp_bytes": result.xla_temp_bytes,
      "stopped_by_time_budget": result.stop == trainer.OUT_OF_TIME,
      "used_best_checkpoint": used_best,
      "test": test.summary(),
      "inner_lrs": jax.tree.map(lambda a: np.asarray(a).tolist(),
                                result.state.meta.inner_lrs),
  }


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | os.PathLike) -> dict:
  """Meta-trains, validates, checkpoints, resumes and tests.

  See :func:`train_and_test`; returns only the summary.
  """
  return train_and_test(config, workdir)[0]


def train_and_test(config: ml_collections.ConfigDict,
                   workdir: str | os.PathLike
                  ) -> tuple[dict, evaluate_lib.EvalResult]:
  """Meta-trains, validates, checkpoints, resumes and tests.

  Args:
    config: an experiment config (see ``experiments/configs/``); checked by
      :func:`metalearn.config_checks.validate_config` before anything
      compiles.
    workdir: output directory; an existing run there is resumed.

  Returns:
    ``(summary, test)``: the summary written to ``workdir/eval.json`` and
    the full test result (per-task accuracies included).

  Raises:
    ValueError: a bad config field or workdir, named.
    metalearn.trainer.Interrupted: SIGINT or SIGTERM arrived; the state was
      saved first, and a rerun resumes from it.
    FloatingPointError: the meta-loss became non-finite.
  """
  config_checks.validate_config(config)
  workdir = prepare_workdir(workdir)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  exp = build_experiment(config)
  ckpt = checkpoints.Checkpointer(workdir)
  state = ckpt.restore_latest(initial_state(config, exp))
  start = int(state.step)
  writer = metrics_log.MetricsWriter(workdir, resume_step=start)
  label = algorithms.get(config.algorithm).label
  try:
    result = trainer.run(
        state, build_step=step_builder(config, exp), plan=exp.plan,
        data_at=lambda _: exp.train_data, key=jax.random.key(config.seed),
        steps_per_call=config.steps_per_call,
        tasks_per_step=config.meta_batch_size, marks=_marks(config),
        on_chunk=lambda c: writer.write(
            c.end, _train_row(c, config.meta_batch_size)),
        on_mark=_on_mark(config, exp, ckpt, writer),
        max_seconds=config.max_train_seconds, label=label,
        progress=config.progress, nan_hint=_nan_hint(ckpt, workdir))
  finally:
    writer.close()
    ckpt.wait()
  if result.stop == trainer.INTERRUPTED:
    raise trainer.Interrupted(int(result.state.step), result.signal)
  if result.stop == trainer.OUT_OF_TIME:
    print(f"max_train_seconds={config.max_train_seconds} reached after "
          f"{int(result.state.step)} meta-steps; evaluating. Rerun to "
          "continue training.")
  best = ckpt.restore_best(result.state)
  test = evaluate_meta(config, exp, (best or result.state).meta,
                       exp.test_tasks)
  summary = _summary(config, result, test, best is not None, start)
  (workdir / "eval.json").write_text(json.dumps(summary, indent=2))
  print(evaluate_lib.format_table(test, title=f"{label} test"))
  return summary, test
