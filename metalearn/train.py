"""Meta-training and evaluation from a config: ``train_and_evaluate``.

One call trains from ``config`` in ``workdir`` and evaluates on the test split,
running the one loop of :mod:`metalearn.trainer`. It resumes by itself from
the newest checkpoint in ``workdir`` that verifies; a resumed run ends with
the same parameters as an uninterrupted one (keys are derived from the step,
never threaded). A workdir belongs to one run: it is locked while a run
uses it (:mod:`metalearn.workdir`) and a resume with other training fields
is refused (:mod:`metalearn.fingerprint`). Outputs in ``workdir``:
``config.json``, ``starts.jsonl`` (every start's config), ``metrics.jsonl``
(training and validation rows), ``checkpoints/`` (latest), ``best/`` (best
by validation accuracy; the ``ensemble_top_k`` best), ``eval.json``.

``eval.json``'s ``test`` is the best checkpoint's test result (the final
state's when there is none). With ``config.ensemble_top_k > 1`` its
``test_ensemble`` is the ensemble of the kept best checkpoints
(:mod:`metalearn.ensemble`: accuracy, ci95, std, num_tasks, k and the
members' ``steps``, best first), or ``null`` when no best checkpoint is
usable.
"""

import json
import os
from pathlib import Path
import time
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from metalearn import algorithms
from metalearn import checkpoints
from metalearn import config_checks
from metalearn import distributed
from metalearn import ensemble as ensemble_lib
from metalearn import evaluate as evaluate_lib
from metalearn import fingerprint
from metalearn import build
from metalearn import metrics_log
from metalearn import sharding
from metalearn import step as step_lib
from metalearn import trainer
from metalearn import workdir as workdir_lib
from metalearn.data import shapes


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
  accuracy = (None if out.step_accuracy is None
              else float(np.mean(out.step_accuracy[..., -1])))
  return {"loss": float(np.mean(out.loss)), "accuracy": accuracy,
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


def _on_mark(config, exp: build.Experiment,
             ckpt: checkpoints.Checkpointer,
             writer: metrics_log.MetricsWriter):
  """Validation and checkpoints at the marks, the end and an early stop."""
  def on_mark(step: int, state: step_lib.MetaState, stop: str) -> None:
    last = step == config.meta_steps or stop != trainer.DONE
    if exp.val_tasks is not None and config.eval_every and (
        step % config.eval_every == 0 or last):
      val = build.evaluate_meta(
          config, exp, distributed.local_copy(state.meta), exp.val_tasks)
      writer.write(step, {"val_accuracy": val.accuracy, "val_ci95": val.ci95,
                          "val_loss": val.loss})
      ckpt.save_best(step, state, val.accuracy if val.accuracy is not None
                     else -val.loss)
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
      "eval_n_way": shapes.eval_n_way(config),
      "eval_k_shot": shapes.eval_k_shot(config),
      "meta_steps": step,
      "resumed_from": start,
      "train_seconds_this_run": result.train_seconds,
      "compile_seconds_this_run": result.compile_seconds,
      "compile_ahead_seconds_this_run": result.compile_ahead_seconds,
      "tasks_per_second": (tasks / result.train_seconds
                           if result.train_seconds > 0 else None),
      "xla_temp_bytes": result.xla_temp_bytes,
      "stopped_by_time_budget": result.stop == trainer.OUT_OF_TIME,
      "used_best_checkpoint": used_best,
      "test": test.summary(),
      "inner_lrs": jax.tree.map(lambda a: np.asarray(a).tolist(),
                                result.state.meta.inner_lrs),
  }


class Outcome(NamedTuple):
  """What :func:`train_and_evaluate` returns.

  Attributes:
    summary: the dict written to ``workdir/eval.json``.
    test: the full test result (per-task accuracies included).
  """
  summary: dict
  test: evaluate_lib.EvalResult


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | os.PathLike) -> Outcome:
  """Meta-trains, validates, checkpoints, resumes and tests.

  Args:
    config: an experiment config (see ``experiments/configs/``); checked by
      :func:`metalearn.config_checks.validate_config` before anything
      compiles.
    workdir: output directory; an existing run there is resumed.

  Returns:
    An :class:`Outcome`: ``(summary, test)``.

  Raises:
    ValueError: a bad config field or workdir, named;
      :class:`metalearn.workdir.WorkdirInUse` when another process holds
      ``workdir``; :class:`metalearn.fingerprint.ConfigChanged` when
      ``workdir`` was started with other training fields (see
      :mod:`metalearn.fingerprint`), before anything is restored.
    metalearn.trainer.Interrupted: SIGINT or SIGTERM arrived; the state was
      saved first, and a rerun resumes from it.
    FloatingPointError: the meta-loss became non-finite.

  The meta-batch is split over ``config.devices`` (0: every device of every
  process, see :mod:`metalearn.distributed`); only process 0 writes files.
  """
  config_checks.validate_config(config)
  mesh = distributed.config_mesh(config)
  writes = distributed.is_writer()
  workdir = prepare_workdir(workdir) if writes else Path(workdir)
  with workdir_lib.claim(workdir, writer=writes):
    return _run(config, workdir, mesh, writes)


def _run(config, workdir: Path, mesh, writes: bool) -> Outcome:
  """:func:`train_and_evaluate` in a claimed workdir."""
  changes = fingerprint.check_resume(workdir, config)  # Before any restore.
  exp = build.build_experiment(config)
  ckpt = checkpoints.Checkpointer(workdir, best_k=config.ensemble_top_k)
  state = ckpt.restore_latest(
      sharding.replicate(build.initial_state(config, exp), mesh))
  start = int(state.step)
  if writes:
    fingerprint.record_start(workdir, config, start, changes)
  data = sharding.replicate(exp.train_data, mesh)
  distributed.synchronize(mesh)
  writer = metrics_log.MetricsWriter(workdir, resume_step=start,
                                     active=writes)
  label = algorithms.get(config.algorithm).label
  try:
    result = trainer.run(
        state, build_step=build.step_builder(config, exp, mesh),
        plan=exp.plan, data_at=lambda _: data,
        key=jax.random.key(config.seed),
        steps_per_call=config.steps_per_call,
        tasks_per_step=config.meta_batch_size, marks=_marks(config),
        on_chunk=lambda c: writer.write(
            c.end, _train_row(c, config.meta_batch_size)),
        on_mark=_on_mark(config, exp, ckpt, writer),
        max_seconds=config.max_train_seconds, label=label,
        progress=config.progress and writes,
        nan_hint=_nan_hint(ckpt, workdir),
        compile_ahead=config.get("compile_ahead", True))
  finally:
    writer.close()
    ckpt.wait()
  if result.stop == trainer.INTERRUPTED:
    raise trainer.Interrupted(int(result.state.step), result.signal)
  if result.stop == trainer.OUT_OF_TIME and writes:
    print(f"max_train_seconds={config.max_train_seconds} reached after "
          f"{int(result.state.step)} meta-steps; evaluating. Rerun to "
          "continue training.")
  members = [(step, distributed.local_copy(s.meta)) for step, s in
             ckpt.restore_best_k(result.state, config.ensemble_top_k)]
  best = members[0][1] if members else None
  meta = (best if best is not None
          else distributed.local_copy(result.state.meta))
  testing = time.perf_counter()
  test = build.evaluate_meta(config, exp, meta, exp.test_tasks)
  summary = _summary(config, result, test, best is not None, start)
  ensemble = None
  if config.ensemble_top_k > 1:
    if members:
      ensemble = build.evaluate_ensemble(
          config, exp, [m for _, m in members], exp.test_tasks,
          steps=[step for step, _ in members])
    summary["test_ensemble"] = (None if ensemble is None
                                else ensemble.summary())
  summary["test_seconds_this_run"] = time.perf_counter() - testing
  if writes:
    (workdir / "eval.json").write_text(json.dumps(summary, indent=2))
    print(evaluate_lib.format_table(test, title=f"{label} test"))
    if ensemble is not None:
      print(ensemble_lib.format_line(ensemble, title=f"{label} test "
                                     "ensemble"))
  return Outcome(summary, test)
