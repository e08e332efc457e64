"""MAML vs FOMAML vs MAML++ vs first-order MAML++ on identical tasks.

Every algorithm is :func:`metalearn.api.train_maml` with its two flags
flipped; everything else is shared: the same training tasks (one fixed pool,
or one sampler, drawn with the same seed, so every meta-iteration sees the
same batch), the same test tasks, the same initial weights (MAML++'s per-step
batch-norm rows start as copies of the shared ones), the same optimizer.

``run_comparison`` measures each algorithm (compile and steady-state time
separately, throughput, memory, losses, test accuracy) and writes
``report.md``, ``results.json`` and PNG plots; :mod:`metalearn.report` holds
the pure pieces (ratios, recommendation, rendering, plots).
"""

import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metalearn import api
from metalearn import config_checks
from metalearn import evaluate as evaluate_lib
from metalearn import report
from metalearn.data import episodes
from metalearn.data import omniglot
from metalearn.models import Model
from metalearn.models import conv4
from metalearn.models import mlp
from metalearn.types import PyTree

ALGORITHMS = tuple(config_checks.ALGORITHMS)
BASELINE = "maml"
IMAGE_SHAPE = (28, 28, 1)


class Protocol(NamedTuple):
  """What every algorithm is trained and tested on.

  Attributes:
    name: ``writeup`` or the config spec it came from.
    dataset: ``tfds`` (the TFDS train / test splits: background / evaluation
      alphabets) or a named split of :func:`metalearn.data.load_splits`.
    n_way, k_shot: task size.
    n_query, eval_n_query: query images per class, training / test tasks.
    inner_steps, eval_inner_steps: inner SGD steps, training / test.
    inner_lr, outer_lr: inner SGD rate (initial value if learned), Adam rate.
    meta_batch_size: tasks per meta-iteration.
    filters: conv-4 channels (MLP hidden width with ``model="mlp"``).
    train_tasks: size of the fixed training pool; 0 samples fresh tasks.
    passes: passes over the pool (``passes * train_tasks / meta_batch_size``
      meta-iterations, each drawing a batch of distinct pool tasks); used
      when ``num_iterations`` is 0.
    num_iterations: meta-iterations (0: set by ``passes``).
    test_tasks: fixed test tasks.
    msl_epochs: MAML++ multi-step-loss annealing, in epochs.
    iters_per_epoch: 0 means one pass over the pool (or 1% of training
      without a pool).
    rotate: 90-degree rotations as extra training classes.
    adapt_norm: adapt batch-norm affines in the inner loop.
    seed: seeds the pools, the initial weights and the task draws.
    batching: ``map`` or ``vmap`` over the tasks of a meta-batch.
    eval_chunk_size: test tasks per compiled evaluation call.
    model: ``conv4`` or ``mlp`` (a quick smoke-test model).
  """
  name: str = "writeup"
  dataset: str = "tfds"
  n_way: int = 5
  k_shot: int = 1
  n_query: int = 15
  eval_n_query: int = 15
  inner_steps: int = 5
  eval_inner_steps: int = 5
  inner_lr: float = 0.01
  outer_lr: float = 0.001
  meta_batch_size: int = 8
  filters: int = 64
  train_tasks: int = 200
  passes: int = 50
  num_iterations: int = 0
  test_tasks: int = 100
  msl_epochs: int = 10
  iters_per_epoch: int = 0
  rotate: bool = False
  adapt_norm: bool = True
  seed: int = 0
  batching: str = "vmap"
  eval_chunk_size: int = 100
  model: str = "conv4"

  @property
  def epoch_iterations(self) -> int:
    if self.iters_per_epoch:
      return self.iters_per_epoch
    if self.train_tasks:
      return math.ceil(self.train_tasks / self.meta_batch_size)
    return max(1, self.iterations // 100)

  @property
  def iterations(self) -> int:
    if self.num_iterations or not self.train_tasks:
      return self.num_iterations
    return math.ceil(self.passes * self.train_tasks / self.meta_batch_size)


WRITEUP = Protocol()
# The CPU default: caps on the full protocol, so four algorithms finish in
# minutes on a 2-core machine. msl_epochs shrinks with passes.
CPU_CAPS = {"filters": 8, "train_tasks": 32, "passes": 3,
            "meta_batch_size": 4, "n_query": 5, "eval_n_query": 5,
            "num_iterations": 24, "test_tasks": 100}


def load_config(spec: str):
  """``path/to/config.py[:arg]`` -> the module's ``get_config([arg])``."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"protocol={spec!r}: expected 'writeup' or a config "
                     f"file path[:arg]; {path!r} is not a file.")
  module_spec = importlib.util.spec_from_file_location("_compare_config",
                                                       path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def config_protocol(spec: str) -> Protocol:
  """The shared setting of a training config (algorithm fields ignored)."""
  c = load_config(spec)
  return Protocol(
      name=spec, dataset=c.dataset, n_way=c.n_way, k_shot=c.k_shot,
      n_query=c.n_query, eval_n_query=c.eval_n_query,
      inner_steps=c.inner_steps, eval_inner_steps=c.eval_inner_steps,
      inner_lr=c.inner_lr, outer_lr=c.outer_lr,
      meta_batch_size=c.meta_batch_size, filters=c.filters,
      train_tasks=c.train_pool, passes=0, num_iterations=c.num_steps,
      test_tasks=c.test_tasks, msl_epochs=c.msl_epochs or WRITEUP.msl_epochs,
      iters_per_epoch=c.iters_per_epoch,
      rotate=c.rotate, adapt_norm=c.adapt_norm, seed=c.seed,
      batching=c.batching)


def shrink(protocol: Protocol, caps=None) -> tuple[Protocol, list[str]]:
  """Caps sizes (``CPU_CAPS`` by default); returns what changed, in words."""
  caps = CPU_CAPS if caps is None else caps
  changes, new = [], {}
  for field, cap in caps.items():
    value = getattr(protocol, field)
    if value > cap:  # 0 (unused) is never capped.
      new[field] = cap
      changes.append(f"{field} {value} -> {cap}")
  if "passes" in new and not protocol.iters_per_epoch:
    # Epochs are passes: keep the annealing's share of training.
    msl = max(1, round(protocol.msl_epochs * new["passes"] / protocol.passes))
    if msl != protocol.msl_epochs:
      new["msl_epochs"] = msl
      changes.append(f"msl_epochs {protocol.msl_epochs} -> {msl}")
  if "num_iterations" in new and protocol.iters_per_epoch:
    ipe = max(1, round(protocol.iters_per_epoch * new["num_iterations"]
                       / protocol.num_iterations))
    new["iters_per_epoch"] = ipe
    changes.append(f"iters_per_epoch {protocol.iters_per_epoch} -> {ipe}")
  return protocol._replace(**new), changes


def has_accelerator() -> bool:
  return jax.default_backend() != "cpu"


def resolve_protocol(spec: str = "writeup", *, full: Optional[bool] = None,
                     overrides: Optional[dict] = None
                    ) -> tuple[Protocol, list[str]]:
  """The protocol to run and the sizes shrunk for the CPU.

  Args:
    spec: ``writeup`` or a config file ``path[:arg]``.
    full: run the full size; ``None``: only when an accelerator is present.
    overrides: field -> value (``None`` values ignored); set after shrinking.
      ``batching`` and ``eval_chunk_size`` default to ``map`` / 1 on CPU
      (vmapped convolutions are slow there) and ``vmap`` / 100 otherwise.

  Returns:
    ``(protocol, changes)``: ``changes`` lists how the sizes differ from
    the full protocol, ``"field old -> new (CPU default)"`` or
    ``"... (flag)"``.
  """
  full_size = WRITEUP if spec == "writeup" else config_protocol(spec)
  if full is None:
    full = has_accelerator()
  protocol, shrunk = shrink(full_size) if not full else (full_size, [])
  cpu = not has_accelerator()
  protocol = protocol._replace(batching="map" if cpu else "vmap",
                               eval_chunk_size=1 if cpu else 100)
  overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
  for k in overrides:
    if k not in Protocol._fields:
      raise ValueError(f"unknown protocol field {k!r}.")
  changes = [f"{s} (CPU default)" for s in shrunk
             if s.split()[0] not in overrides]
  changes += [f"{k} {getattr(full_size, k)} -> {v} (flag)"
              for k, v in overrides.items()
              if k not in ("batching", "eval_chunk_size")
              and v != getattr(full_size, k)]
  protocol = protocol._replace(**overrides)
  check_protocol(protocol)
  return protocol, changes


def check_protocol(p: Protocol) -> None:
  """Raises ValueError naming the first bad field."""
  for field in ("n_way", "k_shot", "n_query", "eval_n_query", "inner_steps",
                "eval_inner_steps", "meta_batch_size", "filters",
                "test_tasks", "msl_epochs", "eval_chunk_size"):
    if getattr(p, field) < 1:
      raise ValueError(f"{field} must be >= 1; got {getattr(p, field)}.")
  if p.n_way < 2:
    raise ValueError(f"n_way must be >= 2; got {p.n_way}.")
  if p.train_tasks and p.train_tasks < p.meta_batch_size:
    raise ValueError(f"train_tasks={p.train_tasks} must be 0 (fresh tasks) "
                     f"or >= meta_batch_size={p.meta_batch_size}.")
  if p.iterations < 1:
    raise ValueError("num_iterations (or passes, with train_tasks > 0) must "
                     f"give >= 1 meta-iterations; got {p.iterations}.")
  if p.model not in ("conv4", "mlp"):
    raise ValueError(f"model must be 'conv4' or 'mlp'; got {p.model!r}.")
  if p.batching not in ("map", "vmap"):
    raise ValueError(f"batching must be 'map' or 'vmap'; got {p.batching!r}.")
  if p.dataset != "tfds" and p.dataset not in omniglot.SPLIT_NAMES:
    raise ValueError(f"dataset must be 'tfds' or one of "
                     f"{omniglot.SPLIT_NAMES}; got {p.dataset!r}.")


class Data(NamedTuple):
  """Training source (a pool, or images for the sampler) and test tasks."""
  train: object
  test: object


def load_data(p: Protocol, cache_dir: Optional[str] = None) -> Data:
  """Draws the fixed pools (the same for every algorithm, by seed)."""
  cache = omniglot.ensure_cache(cache_dir=cache_dir, progress=True)
  if p.dataset == "tfds":
    train = omniglot.load_cached("train", cache).images
    test = omniglot.load_cached("test", cache).images
  else:
    splits = omniglot.load_splits(p.dataset, cache)
    train, test = splits.train, splits.test
  train = jnp.asarray(train)
  sizes = dict(n_way=p.n_way, k_shot=p.k_shot)
  if p.train_tasks:
    train = episodes.fixed_tasks(p.seed + 1, train, num_tasks=p.train_tasks,
                                 n_query=p.n_query, rotate=p.rotate, **sizes)
  test = episodes.fixed_tasks(p.seed + 3, jnp.asarray(test),
                              num_tasks=p.test_tasks, n_query=p.eval_n_query,
                              **sizes)
  return Data(train, test)


def build_model(p: Protocol, plus_plus: bool) -> Model:
  """Conv-4 (per-step batch norm for MAML++) or the MLP (never per-step)."""
  if p.model == "mlp":
    return mlp(p.n_way, input_shape=IMAGE_SHAPE, hidden=(p.filters,))
  steps = max(p.inner_steps, p.eval_inner_steps)
  return conv4(p.n_way, input_shape=IMAGE_SHAPE, filters=p.filters,
               per_step_bn=steps if plus_plus else 0)


def shared_init(p: Protocol, models: dict) -> dict:
  """One initialisation for all: MAML++'s per-step batch-norm rows are
  copies of the plain model's affine, every other tensor is identical."""
  base = models[False].init(jax.random.key(p.seed))
  shapes = jax.eval_shape(models[True].init, jax.random.key(p.seed))
  lifted = jax.tree.map(lambda b, s: jnp.broadcast_to(b, s.shape), base,
                        shapes)
  return {False: base, True: lifted}


def _peak_memory() -> tuple[Optional[int], str]:
  stats = None
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    pass
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss * (1 if sys.platform == "darwin" else 1024), "process peak RSS"


def _lrs_by_layer(inner_lrs: PyTree) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(inner_lrs)[0]
  return {jax.tree_util.keystr(path, simple=True, separator="/"):
          np.asarray(lr, np.float64).reshape(lr.shape[0], -1).mean(axis=1)
          .tolist() for path, lr in flat}


def run_algorithm(p: Protocol, name: str, data: Data, models: dict,
                  params: dict, *, progress: bool = True,
                  isolated: bool = False) -> report.AlgorithmResult:
  """Trains and tests one algorithm; returns its record."""
  if name not in config_checks.ALGORITHMS:
    raise ValueError(f"algorithm {name!r} is not one of {ALGORITHMS}.")
  alg = config_checks.ALGORITHMS[name]
  model = models[alg.plus_plus]
  start = time.perf_counter()
  before, source = _peak_memory()
  if p.train_tasks:
    tasks, task_data, batch = data.train, None, p.meta_batch_size
  else:
    def tasks(key, images):
      return episodes.sample_tasks(
          key, images, n_way=p.n_way, k_shot=p.k_shot, n_query=p.n_query,
          batch_size=p.meta_batch_size, rotate=p.rotate)
    task_data, batch = data.train, None
  result = api.train_maml(
      model, tasks, params=params[alg.plus_plus], inner_lr=p.inner_lr,
      outer_lr=p.outer_lr, inner_steps=p.inner_steps,
      first_order=alg.first_order, plus_plus=alg.plus_plus,
      num_iterations=p.iterations, meta_batch_size=batch,
      task_data=task_data, msl_epochs=p.msl_epochs,
      iters_per_epoch=p.epoch_iterations,
      frozen=() if p.adapt_norm else ("norm",), batching=p.batching,
      seed=p.seed, progress=name if progress else False)
  test = evaluate_lib.evaluate(model.apply, result.params, result.inner_lrs,
                               data.test, num_steps=p.eval_inner_steps,
                               step_aware=model.step_aware,
                               chunk_size=p.eval_chunk_size)
  peak, source = _peak_memory()
  last = result.step_losses[:, -1].astype(np.float64)
  window = min(len(last), p.epoch_iterations)
  chance = 1.0 / p.n_way
  where = "own process" if isolated else (
      "shared process: includes what ran before; see the delta")
  s = result.stats
  return report.AlgorithmResult(
      name=name, first_order=alg.first_order, plus_plus=alg.plus_plus,
      compile_s=s.compile_seconds, train_s=s.train_seconds,
      iterations=s.iterations, tasks_trained=s.tasks,
      tasks_per_s=s.tasks_per_second, peak_memory_bytes=peak,
      peak_memory_source=f"{source} ({where})",
      peak_memory_delta_bytes=None if peak is None else peak - before,
      peak_memory_isolated=isolated,
      xla_temp_bytes=s.xla_temp_bytes,
      final_train_loss=float(last[-window:].mean()),
      train_loss=last.tolist(),
      train_meta_loss=result.losses.astype(np.float64).tolist(),
      test_accuracy=test.accuracy, test_ci95=test.ci95, test_std=test.std,
      chance=chance, improvement_over_chance=test.accuracy - chance,
      test_step_loss=test.step_loss.astype(np.float64).tolist(),
      test_step_accuracy=test.step_accuracy.astype(np.float64).tolist(),
      test_task_accuracy=test.task_accuracy.astype(np.float64).tolist(),
      inner_lrs=_lrs_by_layer(result.inner_lrs) if alg.plus_plus else None,
      wall_s=time.perf_counter() - start)


def _run_isolated(p: Protocol, name: str, cache_dir: Optional[str],
                  progress: bool) -> report.AlgorithmResult:
  """:func:`run_algorithm` in a fresh process, so its memory peak is its
  own. The child redraws the same pools and weights from the same seed."""
  root = str(Path(__file__).resolve().parents[1])
  path = os.environ.get("PYTHONPATH")
  env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path
                                              else "")}
  request = json.dumps({"protocol": p._asdict(), "name": name,
                        "cache_dir": cache_dir, "progress": progress})
  proc = subprocess.run(
      [sys.executable, "-c", "from metalearn import compare; "
       "compare.worker_main()"], input=request, stdout=subprocess.PIPE,
      text=True, env=env, check=False)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode == 0 and lines:
    return report.AlgorithmResult(**json.loads(lines[-1]))
  return report.AlgorithmResult(
      name, error=f"worker exited with status {proc.returncode}")


def worker_main() -> None:
  """Isolated worker: JSON request on stdin, one JSON record on stdout."""
  req = json.loads(sys.stdin.read())
  p = Protocol(**req["protocol"])
  models = {pp: build_model(p, pp) for pp in (False, True)}
  record = run_algorithm(p, req["name"], load_data(p, req["cache_dir"]),
                         models, shared_init(p, models),
                         progress=req["progress"], isolated=True)
  print(json.dumps(record._asdict()), flush=True)


def environment() -> dict:
  """Machine, software and commit, for the report header."""
  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f
                 if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  root = Path(__file__).resolve().parents[1]
  def git(*args):
    try:
      return subprocess.run(["git", *args], cwd=root, capture_output=True,
                            text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
      return ""
  commit = git("rev-parse", "--short", "HEAD")
  dirty = bool(git("status", "--porcelain"))
  return {
      "device": f"{dev.platform} ({dev.device_kind})",
      "device_count": jax.device_count(),
      "cpu": cpu, "cpu_count": os.cpu_count(),
      "load_average_at_start": (list(os.getloadavg())
                                if hasattr(os, "getloadavg") else None),
      "python": platform.python_version(), "jax": jax.__version__,
      "commit": (commit + ("+uncommitted changes" if dirty else "")) or
                "unknown",
  }


def _describe(p: Protocol) -> str:
  if p.train_tasks:
    source = f"a fixed pool of {p.train_tasks} training tasks" + (
        "" if p.num_iterations else f", {p.passes} passes")
  else:
    source = "fresh training tasks every iteration"
  data = ("TFDS train (background) / test (evaluation) splits"
          if p.dataset == "tfds" else f"the '{p.dataset}' split")
  return (f"Omniglot {p.n_way}-way {p.k_shot}-shot ({data}); {source} = "
          f"{p.iterations} meta-iterations of {p.meta_batch_size} tasks "
          f"({p.n_query} query/class); {p.test_tasks} test tasks "
          f"({p.eval_n_query} query/class, {p.eval_inner_steps} inner "
          f"steps); inner SGD lr {p.inner_lr} x {p.inner_steps} steps; outer "
          f"Adam lr {p.outer_lr}; {p.model} with {p.filters} "
          f"{'filters' if p.model == 'conv4' else 'hidden units'}; "
          f"batching={p.batching}; seed {p.seed}")


NOTES = (
    "All algorithms share the training tasks (same pool and the same batch "
    "at every iteration), the test tasks and the initial weights.",
    "mamlpp = multi-step loss (annealed over msl_epochs) + learned per-layer "
    "per-step inner rates + per-step batch norm (conv4 only); "
    "mamlpp_first_order is the same with first_order=True. Derivative-order "
    "annealing and a cosine outer schedule are not used: the four differ "
    "only in the two flags.",
    "compile s: compiling the meta-step once (ahead of time); train s: the "
    "meta-steps after that; tasks/s = tasks trained / train s.",
    "Final train loss: query loss after the last inner step, mean over the "
    "last epoch of training (not the weighted MAML++ objective).",
    "Test accuracy after the last inner step; ± is the 95% CI half-width "
    "(1.96 std / sqrt(tasks)); std is across test tasks; acc - chance "
    "subtracts 1/n_way.",
    "Memory: 'XLA scratch' is the compiled meta-step's temporary buffers "
    "(exact and independent of run order); 'peak' is the runtime peak named "
    "in results.json (peak_memory_source); in a shared process it is "
    "monotone, so it includes earlier algorithms and the data; "
    "peak_memory_delta_bytes is its growth during each algorithm. Use "
    "--isolate for one process per algorithm.",
)


def run_comparison(p: Protocol, algorithms: Sequence[str],
                   output_dir: str, *, shrunk: Sequence[str] = (),
                   isolate: bool = False, progress: bool = True,
                   cache_dir: Optional[str] = None, command: str = "",
                   log: Callable[[str], None] = print) -> dict:
  """Runs ``algorithms`` under protocol ``p`` and writes the report.

  Args:
    p: the protocol (see :func:`resolve_protocol`).
    algorithms: a subset of ``ALGORITHMS``, run in this order.
    output_dir: gets ``report.md``, ``results.json`` and PNG plots.
    shrunk: how the sizes differ from the full protocol (for the header;
      see :func:`resolve_protocol`).
    isolate: one fresh process per algorithm (own memory peak).
    progress: progress bars while training.
    cache_dir: Omniglot cache dir (see :func:`metalearn.data.ensure_cache`).
    command: the command line, for the header.
    log: prints the header and the tables.

  Returns:
    The content of ``results.json``.
  """
  check_protocol(p)
  unknown = [a for a in algorithms if a not in ALGORITHMS]
  if unknown or not algorithms:
    raise ValueError(f"algorithms must be a non-empty subset of "
                     f"{ALGORITHMS}; got {list(algorithms)}.")
  env = environment()
  header = [f"Protocol: {p.name}: {_describe(p)}",
            ("Differs from the full-size protocol (--full and no size "
             "flags run it): " + "; ".join(shrunk)) if shrunk else
            "Full-size protocol (nothing shrunk).",
            f"Machine: {env['device']}, {env['cpu']} x {env['cpu_count']} "
            f"cores, load average at start {env['load_average_at_start']}; "
            f"jax {env['jax']}; commit {env['commit']}",
            "Memory: " + ("one process per algorithm" if isolate else
                          "one shared process (see Notes)"),
            f"Command: {command or 'metalearn.compare.run_comparison'}"]
  log("\n".join(header))
  os.makedirs(output_dir, exist_ok=True)
  start = time.perf_counter()
  results = []
  if isolate:
    for name in algorithms:
      results.append(_run_isolated(p, name, cache_dir, progress))
  else:
    data = load_data(p, cache_dir)
    models = {pp: build_model(p, pp) for pp in (False, True)}
    params = shared_init(p, models)
    for name in algorithms:
      try:
        results.append(run_algorithm(p, name, data, models, params,
                                     progress=progress))
      except Exception as e:  # pylint: disable=broad-except
        log(f"{name} failed:\n{traceback.format_exc()}")
        results.append(report.AlgorithmResult(
            name, error=f"{type(e).__name__}: {str(e)[:300]}"))
  wall = time.perf_counter() - start
  name, reasons = report.recommend(results)
  baseline = BASELINE if BASELINE in algorithms else algorithms[0]
  plots = report.write_plots(results, output_dir)
  title = f"Algorithm comparison: {', '.join(algorithms)}"
  markdown = report.render_markdown(
      results, title=title, header=header + [f"Total wall time {wall:.0f} s"],
      baseline=baseline, plots=plots, notes=NOTES)
  Path(output_dir, "report.md").write_text(markdown)
  summary = {
      "title": title, "protocol": {**p._asdict(),
                                   "iterations": p.iterations},
      "shrunk": list(shrunk), "environment": env, "command": command,
      "isolated": isolate, "wall_s": wall, "baseline": baseline,
      "algorithms": {r.name: r._asdict() for r in results},
      "ratios": [r._asdict() for r in report.ratios(results, baseline)],
      "recommendation": {"algorithm": name, "reasons": reasons},
      "plots": plots, "notes": list(NOTES),
  }
  Path(output_dir, "results.json").write_text(json.dumps(summary, indent=1))
  log("\n" + report.console_table(results))
  log("\n" + report.ratio_table(report.ratios(results, baseline), baseline))
  log("\nQuery loss after each inner step (test tasks):\n"
      + report.step_loss_table(results, markdown=False))
  log(f"\nRecommendation: {name}\n" + "\n".join(f"  - {r}" for r in reasons))
  log(f"\nWrote {output_dir}/report.md, results.json, {', '.join(plots)} "
      f"({wall:.0f} s)")
  return summary
