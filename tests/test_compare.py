"""The comparison: end to end at tiny sizes, and its pure pieces."""

import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import cpu_small
from metalearn import compare
from metalearn import report

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_way=3, k_shot=1, n_query=1, eval_n_query=2, inner_steps=2,
            eval_inner_steps=2, meta_batch_size=2, filters=8, train_tasks=4,
            passes=2, test_tasks=6, msl_epochs=1)
FILES = ("report.md", "results.json", "training_loss.png",
         "adaptation_loss.png", "inner_lrs_mamlpp.png",
         "inner_lrs_mamlpp_first_order.png")
# Every per-algorithm field the report promises; inner_lrs only for MAML++.
FIELDS = [f for f in report.AlgorithmResult._fields
          if f not in ("error", "inner_lrs")]


def check_outputs(out: Path, algorithms, files=FILES) -> dict:
  for name in files:
    assert (out / name).stat().st_size > 0, name
  summary = json.loads((out / "results.json").read_text())
  assert list(summary["algorithms"]) == list(algorithms)
  for name, record in summary["algorithms"].items():
    assert record["error"] is None, record["error"]
    missing = [f for f in FIELDS if record.get(f) is None]
    assert not missing, (name, missing)
    assert (record["inner_lrs"] is not None) == name.startswith("mamlpp")
    steps = summary["protocol"]["eval_inner_steps"]
    assert len(record["test_step_loss"]) == steps
    assert len(record["train_loss"]) == summary["protocol"]["iterations"]
    assert len(record["test_task_accuracy"]) == summary["protocol"][
        "test_tasks"]
  assert summary["recommendation"]["algorithm"] in algorithms
  assert summary["recommendation"]["reasons"]
  assert {r["name"] for r in summary["ratios"]} == set(algorithms)
  return summary


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, omniglot_cache_dir):
  out = tmp_path_factory.mktemp("compare_mlp")
  protocol, changes = compare.resolve_protocol(
      "writeup", full=False, overrides=dict(TINY, model="mlp"))
  summary = compare.run_comparison(protocol, compare.ALGORITHMS, str(out),
                                   shrunk=changes, progress=False,
                                   log=lambda _: None)
  return out, summary


def test_library_run_writes_every_output(mlp_run):
  out, summary = mlp_run
  assert check_outputs(out, compare.ALGORITHMS) == json.loads(
      (out / "results.json").read_text())
  text = (out / "report.md").read_text()
  for name in compare.ALGORITHMS:
    assert f"| {name} |" in text
  assert "## Recommendation" in text
  assert "Differs from the full-size protocol" in text
  assert "n_way 5 -> 3 (flag)" in text


def test_algorithms_share_tasks_and_initialisation(mlp_run):
  # Same init and the same first batch: before any meta-update all four
  # compute the same query losses; afterwards they differ.
  records = mlp_run[1]["algorithms"]
  first = [r["train_loss"][0] for r in records.values()]
  np.testing.assert_allclose(first, first[0], rtol=1e-5)
  last = {r["train_loss"][-1] for r in records.values()}
  assert len(last) > 1


def test_binary_runs_conv4_with_per_step_bn_isolated(tmp_path,
                                                     omniglot_cache_dir):
  # One algorithm keeps this affordable: conv-4 compiles take CPU seconds.
  algorithms = ["mamlpp_first_order"]
  flags = [f"--{k}={v}" for k, v in {**TINY, "filters": 4}.items()] + [
      f"--algorithms={','.join(algorithms)}", "--isolate",
      f"--output_dir={tmp_path}", f"--cache_dir={omniglot_cache_dir}",
      "--noprogress"]
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run([sys.executable, str(ROOT / "experiments" /
                                             "compare.py"), *flags],
                        capture_output=True, text=True, env=env, cwd=ROOT,
                        check=False, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Recommendation:" in proc.stdout
  assert "test acc ± 95% CI" in proc.stdout
  summary = check_outputs(tmp_path, algorithms, FILES[:4] + FILES[5:])
  assert summary["protocol"]["model"] == "conv4"
  record = summary["algorithms"]["mamlpp_first_order"]
  assert "norm0/scale" in record["inner_lrs"]
  assert len(record["inner_lrs"]["conv0/kernel"]) == 2
  assert record["peak_memory_isolated"]
  assert "own process" in record["peak_memory_source"]


def test_shared_init_copies_weights_into_per_step_batch_norm():
  p = compare.Protocol(filters=4, inner_steps=3, eval_inner_steps=4)
  models = {pp: compare.build_model(p, pp) for pp in (False, True)}
  params = compare.shared_init(p, models)
  assert params[True]["norm0"]["scale"].shape == (4, 4)
  for layer in ("conv0", "conv3", "head"):
    for name, x in params[False][layer].items():
      np.testing.assert_array_equal(params[True][layer][name], x)
  np.testing.assert_array_equal(
      params[True]["norm2"]["offset"],
      np.broadcast_to(params[False]["norm2"]["offset"], (4, 4)))


def test_protocol_defaults_shrink_on_cpu_and_flags_override():
  full, shrunk = compare.resolve_protocol("writeup", full=True)
  assert not shrunk
  assert (full.n_way, full.k_shot, full.train_tasks, full.test_tasks,
          full.inner_steps, full.passes, full.inner_lr, full.outer_lr) == (
              5, 1, 200, 100, 5, 50, 0.01, 0.001)
  assert full.iterations == 50 * 200 // full.meta_batch_size
  cpu, shrunk = compare.resolve_protocol("writeup", full=False)
  assert cpu.passes < full.passes and cpu.filters < full.filters
  assert any(s.startswith("passes 50 ->") for s in shrunk)
  assert cpu.batching == "map"  # this test runs on CPU
  mine, shrunk = compare.resolve_protocol("writeup", full=False,
                                          overrides={"passes": 7})
  assert mine.passes == 7 and "passes 50 -> 7 (flag)" in shrunk
  assert "passes 50 -> 3 (CPU default)" not in shrunk
  assert "filters 64 -> 8 (CPU default)" in shrunk
  config, _ = compare.resolve_protocol(
      str(ROOT / "experiments/configs/cpu_small.py") + ":mamlpp", full=True)
  source = cpu_small.get_config("mamlpp")
  assert (config.inner_steps, config.filters, config.train_tasks) == (
      source.inner_steps, source.filters, 0)
  assert config.iterations == source.num_steps
  with pytest.raises(ValueError, match="not a file"):
    compare.resolve_protocol("nope.py")
  with pytest.raises(ValueError, match="meta_batch_size"):
    compare.resolve_protocol("writeup", overrides={"meta_batch_size": 0})


def result(name, acc, ci, speed, memory=1000, **kw):
  return report.AlgorithmResult(name, test_accuracy=acc, test_ci95=ci,
                                tasks_per_s=speed, xla_temp_bytes=memory, **kw)


def test_recommend_follows_the_measurements():
  # A clear accuracy winner wins even though it is the slowest.
  name, reasons = report.recommend([result("maml", 0.90, 0.01, 10),
                                    result("fomaml", 0.80, 0.01, 30)])
  assert name == "maml" and "does not overlap" in reasons[0]
  assert "slower" in " ".join(reasons)
  # Overlapping CIs: the faster one.
  name, reasons = report.recommend([result("maml", 0.90, 0.06, 10),
                                    result("fomaml", 0.85, 0.06, 30)])
  assert name == "fomaml" and "overlaps" in reasons[0]
  # Now MAML is the faster one: the recommendation follows.
  name, _ = report.recommend([result("maml", 0.90, 0.06, 30),
                              result("fomaml", 0.85, 0.06, 10)])
  assert name == "maml"
  # Tied on accuracy and speed (within 10%): the leanest.
  tied = [result("mamlpp", 0.9, 0.05, 20.0, memory=5000),
          result("fomaml", 0.9, 0.05, 19.0, memory=2000)]
  assert report.recommend(tied)[0] == "fomaml"
  tied[1] = tied[1]._replace(xla_temp_bytes=9000)
  assert report.recommend(tied)[0] == "mamlpp"
  # Dicts (as read back from results.json) work; failed runs are skipped.
  name, _ = report.recommend([result("maml", 0.5, 0.1, 1)._asdict(),
                              report.AlgorithmResult("fomaml", error="OOM")])
  assert name == "maml"
  assert report.recommend([report.AlgorithmResult("maml", error="x")])[0] \
      is None


def test_ratios_against_the_baseline():
  a = result("maml", 0.6, 0.05, 10.0, memory=4000, peak_memory_bytes=100,
             peak_memory_isolated=True, test_task_accuracy=[0.5, 0.7, 0.6])
  b = result("fomaml", 0.7, 0.05, 25.0, memory=1000, peak_memory_bytes=50,
             peak_memory_isolated=True, test_task_accuracy=[0.6, 0.8, 0.7])
  rows = {r.name: r for r in report.ratios([a, b])}
  assert rows["fomaml"].speedup == pytest.approx(2.5)
  assert rows["fomaml"].xla_memory_ratio == pytest.approx(0.25)
  assert rows["fomaml"].peak_memory_ratio == pytest.approx(0.5)
  assert rows["fomaml"].accuracy_diff == pytest.approx(0.1)
  # Paired: every task gained exactly 0.1, so the difference is certain.
  assert rows["fomaml"].accuracy_diff_ci95 == pytest.approx(0.0, abs=1e-12)
  # A shared process's peak is cumulative: no ratio of peaks then.
  shared = [a._replace(peak_memory_isolated=False), b]
  assert report.ratios(shared)[1].peak_memory_ratio is None
  text = report.ratio_table(report.ratios([a, b]), "maml")
  assert "2.50x" in text and "75% less" in text and "+10.0 pp" in text
