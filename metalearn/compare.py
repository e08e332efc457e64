"""The algorithms of one config side by side: records and a report.

Each algorithm is the config with its ``algorithm`` field set, run by
:func:`metalearn.train.train_and_evaluate`, the same code as
``experiments/train.py``, in ``output_dir/<algorithm>``. So every algorithm
trains on the same tasks (one seed: the same batch at every meta-step),
from the same initial weights (MAML++'s per-step batch-norm rows start as
copies of the shared ones), and is tested on the same tasks; a comparison
and a training run of one config report the same accuracy. Under several
processes (:mod:`metalearn.distributed`) every process runs every algorithm
and process 0 alone prints and writes the report.
"""

import json
from pathlib import Path
import time
import traceback
from typing import Callable, Optional, Sequence

import jax
import ml_collections
import numpy as np

from metalearn import algorithms
from metalearn import compilation_cache
from metalearn import config_checks
from metalearn import distributed
from metalearn import profiling
from metalearn import report
from metalearn import runs
from metalearn import train
from metalearn import workdir as workdir_lib
from metalearn.data import registry as datasets
from metalearn.data import shapes
from metalearn.models import registry as models

REFERENCE = "maml"


def config_for(config: ml_collections.ConfigDict,
               name: str) -> ml_collections.ConfigDict:
  """A copy of ``config`` that runs algorithm ``name``."""
  algorithms.get(name)
  c = ml_collections.ConfigDict(config.to_dict())
  c.algorithm = name
  config_checks.validate_config(c)
  return c


def _lrs_by_layer(inner_lrs: dict, prefix: str = "") -> dict:
  """{layer path: [inner_steps]} from the summary's nested lists (the mean
  over a leaf's elements; frozen leaves are left out)."""
  out = {}
  for name, value in inner_lrs.items():
    if isinstance(value, dict):
      out.update(_lrs_by_layer(value, f"{prefix}{name}/"))
    elif value is not None:
      lr = np.asarray(value, np.float64)
      out[prefix + name] = lr.reshape(lr.shape[0], -1).mean(axis=1).tolist()
  return out


def _final_train_loss(config, metrics: runs.Metrics) -> Optional[float]:
  """Last-step query loss over the last epoch of training."""
  steps, losses = metrics.column("last_step_loss")
  recent = [l for s, l in zip(steps, losses)
            if s > config.meta_steps - config.steps_per_epoch]
  return float(np.mean(recent)) if recent else None


def _bounds(low_high: tuple[int, int]) -> str:
  """``5`` for a fixed size, ``2..5`` for sizes drawn per episode."""
  low, high = low_high
  return f"{high}" if low == high else f"{low}..{high}"


def record(config, summary: dict, test, metrics: runs.Metrics,
           memory: dict, wall_s: float) -> report.AlgorithmResult:
  """One algorithm's record from its run's summary, test and metrics."""
  alg = algorithms.get(config.algorithm)
  chance = 1.0 / shapes.eval_n_way(config)
  tasks = (summary["meta_steps"] - summary["resumed_from"]) * (
      config.meta_batch_size)
  train_step, train_loss = metrics.column("last_step_loss")
  val_step, val_accuracy = metrics.column("val_accuracy")
  return report.AlgorithmResult(
      name=alg.name, first_order=alg.first_order, plus_plus=alg.plus_plus,
      compile_s=summary["compile_seconds_this_run"],
      compile_ahead_s=summary.get("compile_ahead_seconds_this_run"),
      train_s=summary["train_seconds_this_run"],
      test_s=summary.get("test_seconds_this_run"),
      meta_steps=summary["meta_steps"], tasks_trained=tasks,
      tasks_per_s=summary["tasks_per_second"],
      xla_temp_bytes=summary["xla_temp_bytes"], **memory,
      final_train_loss=_final_train_loss(config, metrics),
      train_loss=train_loss, train_meta_loss=metrics.column("loss")[1],
      train_step=train_step, val_step=val_step, val_accuracy=val_accuracy,
      val_ci95=metrics.column("val_ci95")[1],
      test_accuracy=test.accuracy, test_ci95=test.ci95, test_std=test.std,
      chance=chance, improvement_over_chance=test.accuracy - chance,
      test_step_loss=test.step_loss.astype(np.float64).tolist(),
      test_step_accuracy=test.step_accuracy.astype(np.float64).tolist(),
      test_task_accuracy=test.task_accuracy.astype(np.float64).tolist(),
      **report.adaptation_curves(test),
      inner_lrs=(_lrs_by_layer(summary["inner_lrs"])
                 if alg.learn_inner_lrs else None),
      wall_s=wall_s)


def run_algorithm(config: ml_collections.ConfigDict, name: str,
                  output_dir: str | Path, *,
                  isolated: bool = False) -> report.AlgorithmResult:
  """Trains and tests algorithm ``name`` of ``config`` in
  ``output_dir/name``; returns its record."""
  c = config_for(config, name)
  workdir = Path(output_dir) / name
  start = time.perf_counter()
  before, _ = profiling.peak_memory()
  summary, test = train.train_and_evaluate(c, workdir)
  peak, source = profiling.peak_memory()
  where = "own process" if isolated else (
      "shared process: includes what ran before; see the delta")
  memory = dict(peak_memory_bytes=peak,
                peak_memory_source=f"{source} ({where})",
                peak_memory_delta_bytes=peak - before,
                peak_memory_isolated=isolated)
  return record(c, summary, test, runs.read_metrics(workdir), memory,
                time.perf_counter() - start)


def isolated_worker(request: dict) -> dict:
  """:func:`run_algorithm` in a fresh process (see ``profiling``)."""
  if request.get("compilation_cache"):
    compilation_cache.enable(request["compilation_cache"])
  config = ml_collections.ConfigDict(request["config"])
  return run_algorithm(config, request["name"], request["output_dir"],
                       isolated=True)._asdict()


def _run_one(config, name: str, output_dir, isolate: bool,
             log: Callable[[str], None]) -> report.AlgorithmResult:
  try:
    if isolate:
      return report.as_result(profiling.run_isolated(
          "metalearn.compare:isolated_worker",
          {"config": config.to_dict(), "name": name,
           "output_dir": str(output_dir),
           "compilation_cache": compilation_cache.current()}))
    return run_algorithm(config, name, output_dir)
  except Exception as e:  # pylint: disable=broad-except
    log(f"{name} failed:\n{traceback.format_exc()}")
    return report.AlgorithmResult(
        name, error=f"{type(e).__name__}: {str(e)[:300]}")


def describe(c: ml_collections.ConfigDict) -> str:
  """The protocol in one sentence, for the header, from what the registries
  say of the config's dataset and model."""
  source = (f"a fixed pool of {c.train_pool} training tasks" if c.train_pool
            else "fresh training tasks every meta-step")
  inner = (f"SGD lr {c.inner_lr}" if c.inner_optimizer == "sgd"
           else f"Adam lr {c.inner_adam_lr} (beta1 0)")
  ways, shots = shapes.train_ways(c), shapes.train_shots(c)
  tested = (shapes.eval_n_way(c), shapes.eval_k_shot(c))
  test_shape = ("" if tested == (c.n_way, c.k_shot)
                else f"{tested[0]}-way {tested[1]}-shot, ")
  return (f"{datasets.get(c.dataset).description}, {_bounds(ways)}-way "
          f"{_bounds(shots)}-shot{', rotations' if c.rotate else ''}; "
          f"{source}; {c.meta_steps} meta-steps of {c.meta_batch_size} tasks "
          f"({c.n_query} query/class); {c.test_tasks} test tasks "
          f"({test_shape}{c.eval_n_query} query/class, {c.eval_inner_steps} "
          "inner steps);"
          f" inner {inner} x {c.inner_steps} steps; outer "
          f"{_OPTIMIZER_NAMES.get(c.outer_optimizer, c.outer_optimizer)} lr "
          f"{c.outer_lr} ({c.lr_schedule}); "
          f"{models.get(c.model).describe(c)}; batching={c.batching}; "
          f"seed {c.seed}")


_OPTIMIZER_NAMES = {"adam": "Adam", "sgd": "SGD"}


def time_split(results: Sequence[report.AlgorithmResult],
               wall: float) -> str:
  """Where the wall time of a comparison went, in one line: compiling the
  meta-steps, training, testing (its compiling included) and the rest
  (start-up, data, checkpoints, plots), summed over the algorithms.
  Compiling done in the background while training ran is named apart: its
  time is inside the others'."""
  parts = {"compiling the meta-steps": 0.0, "training": 0.0, "testing": 0.0}
  for r in results:
    for name, seconds in zip(parts, (r.compile_s, r.train_s, r.test_s)):
      parts[name] += seconds or 0.0
  parts["the rest (start-up, data, checkpoints, plots)"] = max(
      0.0, wall - sum(parts.values()))
  share = lambda s: f"{100 * s / wall:.0f}%" if wall > 0 else "n/a"  # noqa: E731
  ahead = sum(r.compile_ahead_s or 0.0 for r in results)
  return f"Total wall time {wall:.0f} s: " + ", ".join(
      f"{name} {seconds:.0f} s ({share(seconds)})"
      for name, seconds in parts.items()) + (
          f"; another {ahead:.0f} s of compiling ran in the background "
          "while training" if ahead >= 0.5 else "")


def header(config, spec: str, command: str, isolate: bool) -> list[str]:
  env = profiling.environment()
  lines = [f"Protocol: {spec}: {describe(config)}"]
  if config.description:
    lines.append(config.description)
  lines += [f"Machine: {env['device']}, {env['cpu']} x {env['cpu_count']} "
            f"cores, load average at start {env['load_average_at_start']}; "
            f"jax {env['jax']}; host memory {env['host_malloc']}; "
            f"commit {env['commit']}",
            "Memory: " + ("one process per algorithm" if isolate else
                          "one shared process (see Notes)"),
            f"Command: {command or 'metalearn.compare.run_comparison'}"]
  return lines


def run_order(algorithm_names: Sequence[str]) -> list[int]:
  """The indices of ``algorithm_names`` in the order they run: those that
  anneal the derivative order (MAML++) after the others, otherwise as
  given.

  MAML++'s first-order phase is the same program as first-order MAML++'s
  first phase; run second, it loads that program from the persistent
  compilation cache instead of compiling it again.
  """
  return sorted(range(len(algorithm_names)),
                key=lambda i: algorithms.get(algorithm_names[i]).anneals_order)


def run_comparison(config: ml_collections.ConfigDict,
                   algorithm_names: Sequence[str], output_dir: str | Path, *,
                   spec: str = "", isolate: bool = False, command: str = "",
                   log: Callable[[str], None] = print) -> dict:
  """Runs ``algorithm_names`` on ``config`` and writes the report.

  Args:
    config: the shared protocol (its ``algorithm`` field is replaced).
    algorithm_names: names of :data:`metalearn.algorithms.ALGORITHMS`,
      reported in this order and run in :func:`run_order`.
    output_dir: gets ``report.md``, ``results.json``, PNG plots and one
      workdir per algorithm.
    spec: the config's name (``file.py:arg``), for the header.
    isolate: one fresh process per algorithm (own memory peak).
    command: the command line, for the header.
    log: prints the header and the tables.

  Returns:
    The content of ``results.json``.
  """
  if not algorithm_names:
    raise ValueError("algorithms must name at least one of "
                     f"{', '.join(algorithms.ALGORITHMS)}.")
  if config.loss != "cross_entropy":
    raise ValueError(f"config.loss={config.loss!r} is invalid for a "
                     "comparison: it ranks test accuracy, so it needs "
                     "'cross_entropy' (train a regression config with "
                     "experiments/train.py).")
  if isolate and jax.process_count() > 1:
    raise ValueError(f"isolate=True is invalid under {jax.process_count()} "
                     "processes: every process must run every algorithm.")
  if not distributed.is_writer():
    log = lambda _: None  # noqa: E731  Process 0 alone prints and writes.
  for name in algorithm_names:
    config_for(config, name)  # Every name and the config check out first.
  lines = header(config, spec, command, isolate)
  log("\n".join(lines))
  output_dir = Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  with workdir_lib.claim(output_dir):  # One comparison per output_dir at once.
    start = time.perf_counter()
    results = [None] * len(algorithm_names)
    for i in run_order(algorithm_names):
      results[i] = _run_one(config, algorithm_names[i], output_dir, isolate,
                            log)
    wall = time.perf_counter() - start
    return write_report(results, config, output_dir,
                        lines + [time_split(results, wall)], wall,
                        command, isolate, log)


def write_report(results, config, output_dir: Path, lines: list[str],
                 wall: float, command: str, isolate: bool,
                 log: Callable[[str], None]) -> dict:
  """Writes report.md, report.html (self-contained: the plots inline),
  results.json and the plots (PNG); prints the tables.

  Under several processes only process 0 writes; the others return the
  summary without the plots.
  """
  if not distributed.is_writer():
    return {"algorithms": {r.name: r._asdict() for r in results}}
  names = [r.name for r in results]
  reference = REFERENCE if REFERENCE in names else names[0]
  best, reasons = report.recommend(results)
  plots = report.write_plots(results, str(output_dir))
  title = f"Algorithm comparison: {', '.join(names)}"
  (output_dir / "report.md").write_text(report.render_markdown(
      results, title=title, header=lines, reference=reference, plots=plots))
  (output_dir / "report.html").write_text(report.render_html(
      results, title=title, header=lines, reference=reference, plots=plots,
      image_dir=str(output_dir)))
  summary = {
      "title": title, "config": config.to_dict(), "header": lines,
      "environment": profiling.environment(), "command": command,
      "isolated": isolate, "wall_s": wall, "reference": reference,
      "algorithms": {r.name: r._asdict() for r in results},
      "ratios": [r._asdict() for r in report.ratios(results, reference)],
      "recommendation": {"algorithm": best, "reasons": reasons},
      "plots": plots,
  }
  (output_dir / "results.json").write_text(json.dumps(summary, indent=1))
  log("\n" + report.console_report(results, reference=reference))
  log("\n" + time_split(results, wall))
  log(f"\nWrote {output_dir}/report.md, report.html, results.json, "
      f"{', '.join(plots)}")
  return summary
