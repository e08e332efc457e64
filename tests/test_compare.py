"""The comparison end to end through its binary, at tiny sizes."""

import json
import os
from pathlib import Path
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import compare as compare_configs
import metalearn as ml
from metalearn import algorithms
from metalearn import build
from metalearn import compare
from metalearn import config_checks
from metalearn import configs
from metalearn import report

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
TINY = dict(meta_steps=4, steps_per_call=1, steps_per_epoch=2, msl_epochs=1,
            test_tasks=8, eval_n_query=2, filters=4, checkpoint_every=0,
            progress=False)
# Every per-algorithm field the report promises; inner_lrs only for MAML++.
FIELDS = [f for f in report.AlgorithmResult._fields
          if f not in ("error", "inner_lrs")]


def binary(name, *flags, cwd=ROOT, env=None, timeout=900):
  """Runs experiments/<name>.py as a user would; returns the process."""
  env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
  return subprocess.run([sys.executable, str(ROOT / "experiments" / name),
                         *flags], capture_output=True, text=True, env=env,
                        cwd=cwd, check=False, timeout=timeout)


def overrides(values: dict) -> list[str]:
  return [f"--config.{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory, omniglot_cache_dir):
  """The README's first command as written, with size overrides only."""
  cwd = tmp_path_factory.mktemp("readme_command")
  proc = binary("compare.py", *overrides(
      {**TINY, "cache_dir": omniglot_cache_dir}), cwd=cwd)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = re.findall(r"^Output: (.*)$", proc.stdout, re.M)
  assert len(out) == 2 and out[0] == out[1], proc.stdout[:500]
  return cwd / out[0], proc.stdout


def test_readme_command_writes_every_output(readme_run):
  out, stdout = readme_run
  assert out.parent.name == "compare" and out.parent.parent.name == "runs"
  for name in ("report.md", "report.html", "results.json",
               "training_loss.png", "adaptation_loss.png",
               "task_accuracy.png", "tradeoff.png", "inner_lrs_mamlpp.png",
               "inner_lrs_mamlpp_first_order.png"):
    assert (out / name).stat().st_size > 0, name
  summary = json.loads((out / "results.json").read_text())
  assert list(summary["algorithms"]) == list(algorithms.COMPARED)
  for name, record in summary["algorithms"].items():
    assert record["error"] is None, record["error"]
    missing = [f for f in FIELDS if record.get(f) is None]
    assert not missing, (name, missing)
    assert (record["inner_lrs"] is not None) == name.startswith("mamlpp")
    assert record["meta_steps"] == 4
    assert len(record["test_step_loss"]) == summary["config"][
        "eval_inner_steps"]
    assert len(record["test_task_accuracy"]) == 8
    assert (out / name / "eval.json").is_file()
  assert summary["recommendation"]["algorithm"] in algorithms.COMPARED
  # The header says how this differs from the full protocol; the write-up's
  # own figures stand beside ours.
  assert "differs from the full protocol" in stdout
  assert "--config.meta_steps=4" in stdout
  text = (out / "report.md").read_text()
  for words in ("74.16", "71.19", "77–82", "write-up"):
    assert words in text and words in stdout, words
  # Where the time went, on the console and in the report's header.
  split = re.findall(r"^Total wall time \d+ s: compiling the meta-steps .*$",
                     stdout, re.M)
  assert len(split) == 1 and split[0] in text, stdout[-2000:]


def test_time_split_adds_up_to_the_wall_time():
  results = [report.AlgorithmResult("maml", compile_s=10.0, train_s=50.0,
                                    test_s=15.0),
             report.AlgorithmResult("fomaml", compile_s=5.0, train_s=10.0,
                                    test_s=5.0),
             report.AlgorithmResult("mamlpp", error="ValueError: x")]
  assert compare.time_split(results, 100.0) == (
      "Total wall time 100 s: compiling the meta-steps 15 s (15%), training "
      "60 s (60%), testing 20 s (20%), the rest (start-up, data, "
      "checkpoints, plots) 5 s (5%)")
  # Never a negative rest, whatever the clocks say.
  assert compare.time_split(results[:1], 70.0).endswith("plots) 0 s (0%)")
  # Compiling in the background is inside the training time: named apart.
  ahead = [results[0]._replace(compile_ahead_s=4.2)] + results[1:]
  assert compare.time_split(ahead, 100.0) == (
      compare.time_split(results, 100.0) + "; another 4 s of compiling ran "
      "in the background while training")


def test_algorithms_share_tasks_and_initialisation(readme_run):
  # Same init and the same first batch: the first meta-step's query loss
  # (computed before any update) is the same for all four; later it is not.
  records = json.loads((readme_run[0] / "results.json").read_text())[
      "algorithms"].values()
  first = [r["train_loss"][0] for r in records]
  np.testing.assert_allclose(first, first[0], rtol=1e-5)
  assert len({r["train_loss"][-1] for r in records}) > 1


def test_compare_and_train_agree_and_reuse_compiled_programs(tmp_path):
  spec = "--config=cpu_small:mamlpp"  # a preset, by name
  sizes = overrides({**TINY, "inner_steps": 2, "eval_inner_steps": 2,
                     "val_tasks": 4, "eval_every": 2,
                     "dataset": "synthetic"})
  env = {"METALEARN_JAX_CACHE_DIR": str(tmp_path / "jax")}
  trained = binary("train.py", spec, *sizes, f"--workdir={tmp_path / 't'}",
                   env=env)
  assert trained.returncode == 0, trained.stderr[-3000:]
  compared = binary("compare.py", spec, *sizes, "--algorithms=mamlpp",
                    "--isolate", f"--output_dir={tmp_path / 'c'}", env=env)
  assert compared.returncode == 0, compared.stderr[-3000:]
  by_train = json.loads((tmp_path / "t" / "eval.json").read_text())
  by_compare = json.loads((tmp_path / "c" / "results.json").read_text())[
      "algorithms"]["mamlpp"]
  assert by_train["used_best_checkpoint"]
  assert by_compare["test_accuracy"] == by_train["test"]["accuracy"]
  assert by_compare["peak_memory_isolated"]
  # The second process found the first one's programs in the persistent
  # compilation cache: without it, it would compile as long as the first.
  # The margin is wide because another test worker shares the cores.
  assert (by_compare["compile_s"] + by_compare["compile_ahead_s"]
          < 0.8 * (by_train["compile_seconds_this_run"]
                   + by_train["compile_ahead_seconds_this_run"]))


def test_bad_flag_is_one_line_naming_it(tmp_path):
  proc = binary("compare.py", "--config.meta_steps=0",
                f"--output_dir={tmp_path}", "--algorithms=maml")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "compare.py: error: config.meta_steps=0 is invalid")
  assert "Traceback" not in proc.stderr
  proc = binary("compare.py", "--algorithms=not_an_algorithm",
                f"--output_dir={tmp_path}")
  assert proc.returncode == 2 and "algorithm 'not_an_algorithm' is unknown" in (
      proc.stderr)
  proc = binary("compare.py", "--config=no_such_preset",
                f"--output_dir={tmp_path}")
  assert proc.returncode == 2 and "no preset config 'no_such_preset'" in (
      proc.stderr) and "Traceback" not in proc.stderr


def test_compare_config_sizes():
  full = configs_module().get_config("full")
  cpu = configs_module().get_config("cpu")
  assert (full.dataset, full.train_pool, full.inner_steps, full.inner_lr,
          full.meta_steps, full.meta_batch_size) == ("tfds", 200, 5, 0.01,
                                                     1250, 8)
  assert cpu.test_tasks >= 200 and cpu.train_pool == 0
  assert "meta_steps 1250 -> " in cpu.description
  # MAML++ on the CPU weighs a trajectory of inner steps and anneals the
  # derivative order, both switching at one meta-step: two phase programs.
  plan = build.build_plan(compare.config_for(cpu, "mamlpp"))
  assert cpu.inner_steps >= 3 and plan.msl_end > 0
  assert plan.first_order_end == plan.msl_end and plan.switches() == [
      plan.msl_end]
  assert configs_module().get_config().to_dict() == cpu.to_dict()  # on CPU
  with pytest.raises(ValueError, match="unknown"):
    configs_module().get_config("huge")


def test_config_for_sets_only_the_algorithm():
  base = configs.base()
  c = compare.config_for(base, "fomaml")
  assert c.algorithm == "fomaml" and base.algorithm == "maml"
  assert configs.differences(c, base) == []
  for name in algorithms.ALGORITHMS:  # --algorithms takes every name.
    config_checks.validate_config(compare.config_for(base, name))
  with pytest.raises(ValueError, match="unknown"):
    compare.config_for(base, "not_an_algorithm")


def configs_module():
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("compare_config",
                                                CONFIGS / "compare.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _phase_program(config, name: str, phase_index: int) -> str:
  """The lowered meta-step of ``name``'s phase (0: first) on ``config``,
  without debug info, from zero tasks of the config's shapes."""
  c = compare.config_for(config, name)
  plan = build.build_plan(c)
  model, optimizer = build.build_model(c), build.build_optimizer(c)
  exp = build.Experiment(model, optimizer, None, None, None, plan)
  state = build.initial_state(c, exp)
  phase = plan.phase_at(plan.switches()[0] if phase_index else 0)
  step = build.meta_step_builder(c, model, optimizer,
                                 lambda key, data: data)(phase, 1)
  shots = c.n_way * c.k_shot
  x = jnp.zeros((c.meta_batch_size, shots, 28, 28, 1))
  y = jnp.zeros((c.meta_batch_size, shots), jnp.int32)
  qx = jnp.zeros((c.meta_batch_size, c.n_way * c.n_query, 28, 28, 1))
  qy = jnp.zeros((c.meta_batch_size, c.n_way * c.n_query), jnp.int32)
  tasks = ml.Task(x, y, qx, qy)
  return step.lower(state, tasks, jax.random.key(0)).as_text(
      debug_info=False)


def test_mamlpp_runs_after_first_order_mamlpp_and_shares_its_first_phase():
  names = list(algorithms.COMPARED)
  assert [names[i] for i in compare.run_order(names)] == [
      "maml", "fomaml", "mamlpp_first_order", "mamlpp"]
  # MAML++'s first phase is first-order MAML++'s, program for program, so
  # the persistent compilation cache serves it; the later phases differ.
  config = compare_configs.cpu()
  config.filters = 4
  assert (_phase_program(config, "mamlpp", 0)
          == _phase_program(config, "mamlpp_first_order", 0))
  assert (_phase_program(config, "mamlpp", 1)
          != _phase_program(config, "mamlpp_first_order", 1))
