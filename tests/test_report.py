"""The comparison report: numbers, recommendation, write-up table, markdown,
plots (each checked against the numbers of ``results.json``), and no global
matplotlib backend switch."""

import json
import math
import os
from pathlib import Path
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from metalearn import algorithms
from metalearn import report
from metalearn.report import text
from metalearn.report import writeup

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result(name, acc, ci, speed, memory=1000, **kw):
  return report.AlgorithmResult(name, test_accuracy=acc, test_ci95=ci,
                                tasks_per_s=speed, xla_temp_bytes=memory, **kw)


def full(name, acc, ci, **kw):
  """A finished record with every field the tables show."""
  fields = dict(
      first_order=algorithms.ALGORITHMS[name].first_order,
      plus_plus=algorithms.ALGORITHMS[name].plus_plus, compile_s=3.0,
      train_s=20.0, meta_steps=6, tasks_trained=24, tasks_per_s=1.2,
      peak_memory_bytes=500 * 10**6, peak_memory_isolated=True,
      xla_temp_bytes=2**21, final_train_loss=0.9,
      train_loss=[1.6, 1.4, 1.3, 1.1, 1.0, 0.9],
      train_meta_loss=[1.6, 1.4, 1.3, 1.1, 1.0, 0.9], test_std=0.2,
      chance=0.2, improvement_over_chance=acc - 0.2,
      test_step_loss=[1.5, 1.2, 1.0], test_step_accuracy=[0.3, 0.4, 0.5],
      test_task_accuracy=[acc] * 4)
  fields.update(kw)
  return report.AlgorithmResult(name, test_accuracy=acc, test_ci95=ci,
                                **fields)


# Moved from tests/test_compare.py.
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


# Moved from tests/test_compare.py.
def test_ratios_against_the_reference():
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
  text_ = report.ratio_table(report.ratios([a, b]), "maml")
  assert "2.50x" in text_ and "75% less" in text_ and "+10.0 pp" in text_


def test_ratios_reference_row_missing_numbers_and_paired_ci():
  a = result("maml", 0.6, 0.05, 10.0, test_task_accuracy=[0.5, 0.7, 0.6])
  b = result("fomaml", 0.6, 0.05, None, test_task_accuracy=[0.6, 0.6, 0.6])
  # d = [-0.1, 0.1, 0]: std = 0.1 sqrt(2/3).
  expected = 1.96 * 0.1 * math.sqrt(2 / 3) / math.sqrt(3)
  assert report.paired_ci95([0.6] * 3, [0.5, 0.7, 0.6]) == pytest.approx(
      expected)
  assert report.paired_ci95([0.6], [0.5]) is None
  assert report.paired_ci95([0.6, 0.5], [0.5]) is None
  # The reference absent: the first record is the reference.
  rows = report.ratios([b, a], reference="anil")
  assert rows[0].name == "fomaml" and rows[0].speedup is None
  assert rows[1].speedup is None  # the reference has no throughput
  assert rows[1].accuracy_diff_ci95 == pytest.approx(expected)
  assert report.ratios([]) == []


def test_recommend_with_overlapping_cis_decides_by_cost_not_compile():
  # 0.80 ± 0.04 and 0.75 ± 0.03 overlap (0.05 <= 0.07): accuracy ties.
  # mamlpp compiles for ages but trains fastest: compile time is not cost.
  slow = result("maml", 0.80, 0.04, 10.0, compile_s=1.0)
  fast = result("mamlpp", 0.75, 0.03, 40.0, compile_s=500.0)
  name, reasons = report.recommend([slow, fast])
  assert name == "mamlpp"
  assert reasons[0].startswith("Accuracy does not separate")
  assert "overlaps" in reasons[0] and "cost decides" in reasons[0]
  assert "compile time excluded" in reasons[1] and "4.00x maml" in reasons[1]
  # An outsider whose CI does not overlap the best's is not in the tie,
  # however fast it is.
  outsider = result("fomaml", 0.50, 0.01, 1000.0)
  assert report.recommend([slow, fast, outsider])[0] == "mamlpp"
  # Nothing timed: the most accurate of the tied ones.
  name, reasons = report.recommend([slow._replace(tasks_per_s=None),
                                    fast._replace(tasks_per_s=None)])
  assert name == "maml" and "No throughput" in reasons[1]


def test_recommend_clear_winner_names_runner_up_and_cost():
  name, reasons = report.recommend([
      result("fomaml", 0.60, 0.02, 50.0),
      result("mamlpp", 0.90, 0.02, 5.0),
      result("maml", 0.70, 0.02, 10.0)])
  assert name == "mamlpp"
  assert "90.0% ± 2.0" in reasons[0] and "does not overlap" in reasons[0]
  assert reasons[1] == "Runner-up: maml at 70.0% ± 2.0."
  assert "10.00x slower than the fastest (fomaml)" in reasons[2]


def test_as_result_reads_dicts_and_the_old_iterations_key():
  r = report.as_result({"name": "maml", "iterations": 7, "unknown": 1})
  assert r.meta_steps == 7 and r.name == "maml"
  r = report.as_result({"name": "maml", "iterations": 7, "meta_steps": 9})
  assert r.meta_steps == 9
  record = report.AlgorithmResult("fomaml", meta_steps=3)
  assert report.as_result(record) is record
  assert report.as_result(record._asdict()) == record
  assert "iterations" not in report.AlgorithmResult._fields


def test_error_rows():
  ok = full("maml", 0.7, 0.02)
  failed = report.AlgorithmResult("fomaml", error="OOM | out of\nmemory")
  head, rows = report.table_rows([ok, failed])
  assert rows[1][:2] == ["fomaml", "error: OOM | out of\nmemory"]
  assert all(c == "" for c in rows[1][2:]) and len(rows[1]) == len(head)
  console = report.console_table([ok, failed])
  line = next(l for l in console.splitlines() if l.startswith("fomaml"))
  assert line.split() == ["fomaml", "error:", "OOM", "|", "out", "of",
                          "memory"]
  # The long error does not widen the compile column.
  assert console.splitlines()[0].split("  ")[0].rstrip() == "algorithm"
  assert len(console.splitlines()[0]) == len(
      next(l for l in console.splitlines() if l.startswith("maml")))
  markdown = report.render_markdown([ok, failed], title="t")
  assert "| fomaml | error: OOM \\| out of memory |" in markdown
  ratio = {r.name: r for r in report.ratios([ok, failed])}["fomaml"]
  assert ratio.speedup is None and ratio.accuracy_diff is None
  _, rows = report.writeup_rows([ok, failed])
  assert rows[1][:4] == ["FOMAML", "error", "71.19%", "error"]
  assert report.recommend([ok, failed])[0] == "maml"


def test_writeup_constant_is_the_published_figures():
  w = report.WRITEUP_RESULTS
  assert set(w) == {"maml", "fomaml", "mamlpp"}
  assert (w["maml"].test_accuracy, w["maml"].train_s,
          w["maml"].peak_memory_gb) == (0.7416, 364.6, 1.34)
  assert (w["fomaml"].test_accuracy, w["fomaml"].train_s,
          w["fomaml"].peak_memory_gb) == (0.7119, 126.5, 0.88)
  assert w["mamlpp"].test_accuracy is None
  assert w["mamlpp"].estimate == (0.77, 0.82)


def test_ours_higher_rests_on_the_ci():
  maml, est = report.WRITEUP_RESULTS["maml"], report.WRITEUP_RESULTS["mamlpp"]
  assert writeup.higher(0.80, 0.02, maml) == "yes"
  assert writeup.higher(0.70, 0.02, maml) == "no"
  assert writeup.higher(0.75, 0.02, maml) == "within our CI"
  assert writeup.higher(0.75, None, maml) == "yes"
  assert writeup.higher(0.85, 0.02, est) == "yes"
  assert writeup.higher(0.80, 0.02, est) == "within its estimate"
  assert writeup.higher(0.70, 0.05, est) == "no"
  assert writeup.higher(0.99, 0.0, None) == "not in the write-up"
  assert writeup.higher(None, 0.0, maml) == "n/a"


def test_writeup_table_contents():
  ours = [full("maml", 0.80, 0.02, train_s=12.5, compile_s=4.5,
               peak_memory_bytes=2 * 10**9),
          full("fomaml", 0.65, 0.02, peak_memory_isolated=False),
          full("mamlpp_first_order", 0.75, 0.02),
          full("anil", 0.60, 0.02)]
  head, rows = report.writeup_rows(ours)
  assert head[:4] == ["algorithm", "test acc: ours ± 95% CI",
                      "test acc: write-up", "ours higher?"]
  by = {r[0]: dict(zip(head, r)) for r in rows}
  # Ours first, in order, then the write-up's algorithm we did not run.
  assert list(by) == ["MAML", "FOMAML", "first-order MAML++", "ANIL",
                      "MAML++"]
  assert by["MAML"] == {
      "algorithm": "MAML", "test acc: ours ± 95% CI": "80.0% ± 2.0",
      "test acc: write-up": "74.16%", "ours higher?": "yes",
      "train s: ours": "12.5", "compile s: ours": "4.5",
      "train s: write-up": "364.6", "peak memory: ours": "2.00 GB",
      "peak memory: write-up": "1.34 GB"}
  assert by["FOMAML"]["test acc: write-up"] == "71.19%"
  assert by["FOMAML"]["ours higher?"] == "no"
  assert by["FOMAML"]["train s: write-up"] == "126.5"
  assert by["FOMAML"]["peak memory: write-up"] == "0.88 GB"
  assert by["FOMAML"]["peak memory: ours"] == "0.50 GB (shared process)"
  for label in ("first-order MAML++", "ANIL"):
    assert by[label]["test acc: write-up"] == "not in the write-up"
    assert by[label]["ours higher?"] == "not in the write-up"
    assert by[label]["train s: write-up"] == "not in the write-up"
    assert by[label]["peak memory: write-up"] == "not in the write-up"
  assert by["MAML++"]["test acc: write-up"] == "estimated 77–82%, never run"
  assert by["MAML++"]["test acc: ours ± 95% CI"] == "not run here"
  console = report.writeup_table(ours)
  assert "estimated 77–82%, never run" in console
  assert "| MAML | 80.0% ± 2.0 | 74.16% | yes | 12.5 | 4.5 | 364.6 |" in (
      report.writeup_table(ours, markdown=True))


def test_render_markdown_has_the_right_rows_and_sections():
  results = [full("maml", 0.80, 0.02), full("fomaml", 0.78, 0.02,
                                               tasks_per_s=3.6)]
  md = report.render_markdown(
      [r._asdict() for r in results], title="Comparison",
      header=["Machine: test"], plots=["training_loss.png"],
      notes=["a note"])
  assert md.startswith("# Comparison\n\n- Machine: test\n")
  for name in ("maml", "fomaml"):
    assert f"- {name} ({algorithms.ALGORITHMS[name].label}): " \
        f"{algorithms.ALGORITHMS[name].summary}" in md
  assert ("| maml | 3.0 | 20.0 | 1.2 | 477 | 2.00 | 0.900 | 80.0% ± 2.0 | "
          "20.0% | 60.0% |") in md
  assert "| compile s | train s |" in md
  assert "## Ours vs the write-up (its own GPU and protocol)" in md
  assert writeup.CAPTION in md
  assert "| FOMAML | 78.0% ± 2.0 | 71.19% | yes |" in md
  assert "| MAML++ | not run here | estimated 77–82%, never run |" in md
  assert "| fomaml | 3.00x |" in md  # against maml
  assert "| maml | 1.500 | 1.200 | 1.000 |" in md
  # 0.80 ± 0.02 vs 0.78 ± 0.02 overlap: fomaml is 3x faster.
  assert "## Recommendation\n\n**fomaml**\n" in md
  assert "- a note" in md and "![training_loss.png](training_loss.png)" in md
  # Ratios against the reference come before the recommendation.
  assert md.index("## Against maml") < md.index("## Recommendation")


def test_console_report_shows_everything():
  results = [full("maml", 0.80, 0.02), full("mamlpp_first_order", 0.50, 0.02)]
  out = report.console_report(results)
  assert "mamlpp_first_order (first-order MAML++): " + (
      algorithms.ALGORITHMS["mamlpp_first_order"].summary) in out
  assert "test acc ± 95% CI" in out
  assert "Ours vs the write-up (the write-up's own GPU and protocol):" in out
  assert "not in the write-up" in out and "364.6" in out
  assert "speed-up vs maml" in out
  assert "Query loss after each inner step" in out
  assert "Recommendation: maml" in out
  assert report.explanations([{"name": "mystery"}]) == [
      "mystery (mystery): not in metalearn.algorithms.ALGORITHMS"]


def test_text_table_and_markdown_escape():
  assert text.text_table(["a", "bb"], [["x", "1"], ["long", "22"]]) == (
      "a     bb\n----  --\nx      1\nlong  22")
  assert text.markdown_table(["a"], [["x|y\nz"]]) == (
      "| a |\n|---|\n| x\\|y z |")
  assert text.pct(0.7416) == "74.2%" and text.pct(None) == "n/a"
  assert text.pct(0.5, 0.012) == "50.0% ± 1.2"
  assert text.pct(True) == "n/a" and text.num(float("nan")) == "n/a"


def test_write_plots_writes_png_files(tmp_path):
  lrs = {"conv0/kernel": [0.01, 0.02, 0.03], "head/bias": [0.1, 0.2, 0.3]}
  results = [full("maml", 0.8, 0.02),
             full("mamlpp", 0.8, 0.02, inner_lrs=lrs)._asdict(),
             report.AlgorithmResult("fomaml", error="boom")]
  out = tmp_path / "plots"
  names = report.write_plots(results, str(out))
  assert names == ["training_loss.png", "adaptation_loss.png",
                   "task_accuracy.png", "tradeoff.png",
                   "inner_lrs_mamlpp.png"]
  assert sorted(os.listdir(out)) == sorted(names)
  for name in names:
    data = (out / name).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, name
    assert report.caption(name), name
  with pytest.raises(ValueError, match="no learned inner_lrs"):
    report.plot_inner_lrs(results[0], str(tmp_path / "x.png"))
  # Nothing finished: still the four (empty) pictures, no crash.
  assert report.write_plots([report.AlgorithmResult("maml", error="x")],
                            str(tmp_path / "empty")) == names[:4]


def run_results(*, calls=5, per_call=10, tasks=12, steps=3, val=True):
  """``results.json``'s algorithms as a finished comparison writes them:
  real JSON, per-call training rows, per-task test values (no training)."""
  out = {}
  for i, name in enumerate(("maml", "fomaml", "mamlpp")):
    rng = np.random.default_rng(i)
    test = SimpleNamespace(
        task_initial_loss=1.6 + 0.1 * rng.random(tasks),
        task_step_loss=np.sort(rng.random((tasks, steps)), axis=1)[:, ::-1],
        task_initial_accuracy=0.2 + 0.05 * rng.random(tasks),
        task_step_accuracy=np.sort(rng.random((tasks, steps)), axis=1))
    task_acc = test.task_step_accuracy[:, -1]
    vs = [2 * per_call, calls * per_call] if val else []
    r = full(name, float(task_acc.mean()), 0.05, meta_steps=calls * per_call,
             train_loss=list(1.5 - 0.1 * np.arange(calls) + 0.05 * i),
             train_step=[per_call * (k + 1) for k in range(calls)],
             val_step=vs, val_accuracy=[0.5 + 0.1 * i, 0.7][:len(vs)],
             val_ci95=[0.03, 0.02][:len(vs)],
             test_step_loss=test.task_step_loss.mean(0).tolist(),
             test_task_accuracy=task_acc.tolist(), train_s=10.0 * (i + 1),
             **report.adaptation_curves(test))
    out[name] = r._asdict()
  return list(json.loads(json.dumps({"algorithms": out}))["algorithms"]
              .values())


def test_training_picture_is_against_true_meta_steps():
  results = run_results()
  data = report.training_data(results)
  fig = report.draw_training(data)
  loss_ax, acc_ax = fig.axes[:2]
  # Per algorithm a faint raw line then a solid moving average, both at the
  # meta-steps of the metrics rows (10, 20, ..., 50), not at 1..5.
  lines = loss_ax.get_lines()
  assert len(lines) == 2 * len(results)
  for r, raw, smooth in zip(results, lines[::2], lines[1::2]):
    np.testing.assert_array_equal(raw.get_xdata(), r["train_step"])
    np.testing.assert_array_equal(raw.get_ydata(), r["train_loss"])
    np.testing.assert_array_equal(smooth.get_xdata(), r["train_step"])
    assert raw.get_alpha() < 0.5 and smooth.get_alpha() in (None, 1.0)
    assert smooth.get_linewidth() > raw.get_linewidth()
  assert loss_ax.get_xlabel() == "meta-step"
  assert max(lines[0].get_xdata()) == results[0]["meta_steps"]
  # The moving average: trailing mean over 3 points here.
  y = np.asarray(results[0]["train_loss"])
  np.testing.assert_allclose(data.smooth[0].y[2], y[:3].mean())
  np.testing.assert_allclose(data.smooth[0].y[0], y[0])
  # Validation accuracy with its CI, at its meta-steps; the test stars.
  for r, s in zip(results, data.val):
    np.testing.assert_array_equal(s.x, r["val_step"])
    np.testing.assert_array_equal(s.y, r["val_accuracy"])
    np.testing.assert_array_equal(s.ci95, r["val_ci95"])
  assert len(acc_ax.collections) >= len(results)  # the CI bands
  assert [t.y[0] for t in data.test] == [r["test_accuracy"] for r in results]
  # An old record without train_step: rows spread over its meta-steps.
  old = {k: v for k, v in results[0].items() if k != "train_step"}
  spread = report.training_data([old])
  np.testing.assert_allclose(spread.raw[0].x, [10, 20, 30, 40, 50])
  assert not spread.meta_steps_known
  # No validation: the panel says so instead of staying blank.
  quiet = report.training_data(run_results(val=False))
  assert quiet.val == []
  texts = [t.get_text() for t in report.draw_training(quiet).axes[1].texts]
  assert any("no validation" in t for t in texts)


def test_adaptation_picture_starts_before_the_first_inner_step():
  results = run_results(steps=3)
  data = report.adaptation_data(results)
  fig = report.draw_adaptation(data)
  for what, series, ax in (("loss", data.loss, fig.axes[0]),
                           ("accuracy", data.accuracy, fig.axes[1])):
    for r, s, line in zip(results, series, ax.get_lines()):
      np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2, 3])
      np.testing.assert_allclose(line.get_ydata(),
                                 r[f"test_adaptation_{what}"])
      np.testing.assert_allclose(s.ci95, r[f"test_adaptation_{what}_ci95"])
    assert len(ax.collections) == len(results)  # one CI band each
  # Step 0 is the unadapted loss, steps 1.. the per-step test loss.
  r = results[0]
  assert r["test_adaptation_loss"][0] > r["test_adaptation_loss"][1]
  np.testing.assert_allclose(r["test_adaptation_loss"][1:],
                             r["test_step_loss"])
  # An old record with only the per-step means starts at step 1, no band.
  old = report.adaptation_data([{"name": "maml",
                                 "test_step_loss": [1.0, 0.5]}])
  assert old.loss[0].x.tolist() == [1, 2] and old.loss[0].ci95 is None


def test_adaptation_curves_from_a_real_evaluation():
  # conv-4 at toy size: step 0 is the meta-learned weights themselves.
  from metalearn import evaluate  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import metalearn as ml  # pylint: disable=g-import-not-at-top
  model = ml.models.conv4(3, input_shape=(4, 4, 1), filters=2, num_blocks=1,
                          bn_steps=2)
  params = jax.jit(model.init)(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (5, 6, 4, 4, 1))
  y = jnp.tile(jnp.arange(3), (5, 2))
  tasks = ml.Task(x, y, x[:, ::-1], y)
  test = evaluate.evaluate(model.apply, params,
                           ml.fixed_inner_lrs(params, 0.5, 2), tasks,
                           inner_steps=2, step_aware=True, chunk_size=2)
  logits = jax.vmap(lambda q: model.apply(params, q, 0))(tasks.query_x)
  labels = tasks.query_y
  expected = -jnp.mean(jnp.take_along_axis(
      jax.nn.log_softmax(logits), labels[..., None], -1), axis=(1, 2))
  np.testing.assert_allclose(test.task_initial_loss, expected, rtol=1e-5)
  np.testing.assert_allclose(
      test.task_initial_accuracy,
      jnp.mean(jnp.argmax(logits, -1) == labels, axis=1), rtol=1e-6)
  assert test.task_step_accuracy.shape == (5, 2)
  np.testing.assert_allclose(test.task_step_accuracy[:, -1],
                             test.task_accuracy)
  curves = report.adaptation_curves(test)
  np.testing.assert_allclose(curves["test_adaptation_loss"],
                             [expected.mean(), *test.step_loss], rtol=1e-5)
  np.testing.assert_allclose(curves["test_adaptation_accuracy"][1:],
                             test.step_accuracy, rtol=1e-6)
  ci = 1.96 * np.std(test.task_step_loss[:, 1]) / math.sqrt(5)
  np.testing.assert_allclose(curves["test_adaptation_loss_ci95"][2], ci,
                             rtol=1e-5)


def test_task_accuracy_picture_uses_the_per_task_accuracies():
  results = run_results(tasks=12)
  data = report.task_accuracy_data(results)
  fig = report.draw_task_accuracy(data)
  ax = fig.axes[0]
  points = [c for c in ax.collections
            if c.get_offsets().shape[0] == 12]  # the strips of points
  assert len(points) == len(results)
  for r, d, strip in zip(results, data, points):
    np.testing.assert_array_equal(d.values, r["test_task_accuracy"])
    np.testing.assert_allclose(np.asarray(strip.get_offsets())[:, 1],
                               r["test_task_accuracy"])
    assert d.std == pytest.approx(np.std(r["test_task_accuracy"]))
    assert d.mean == pytest.approx(r["test_accuracy"])
  texts = [t.get_text() for t in ax.texts]
  for d in data:
    assert any(f"std {100 * d.std:.1f}" in t for t in texts)
  assert [t.get_text() for t in ax.get_xticklabels()] == [
      "MAML", "FOMAML", "MAML++"]


def test_tradeoff_picture_puts_ours_beside_the_writeup():
  results = run_results()
  data = report.tradeoff_data(results)
  ours = [p for p in data.points if p.source == "ours"]
  theirs = {p.name: p for p in data.points if p.source == "write-up"}
  assert [(p.name, p.accuracy, p.ci95, p.train_s, p.memory_bytes)
          for p in ours] == [
              (r["name"], r["test_accuracy"], r["test_ci95"], r["train_s"],
               r["peak_memory_bytes"]) for r in results]
  assert data.memory_kind == "own-process peak"  # full() is isolated
  assert (theirs["maml"].accuracy, theirs["maml"].train_s,
          theirs["maml"].memory_bytes) == (0.7416, 364.6, 1.34e9)
  assert set(theirs) == {"maml", "fomaml"}
  assert data.estimates == [("mamlpp", 0.77, 0.82)]
  # A shared process: our memory is the XLA scratch, not the peak.
  shared = [dict(r, peak_memory_isolated=False) for r in results]
  data = report.tradeoff_data(shared)
  assert data.memory_kind == "XLA scratch of one meta-step"
  assert [p.memory_bytes for p in data.points[:3]] == [
      r["xla_temp_bytes"] for r in results]
  fig = report.draw_tradeoff(data)
  assert fig.axes[0].get_xscale() == "log"
  assert "XLA scratch" in fig.axes[1].get_xlabel()


def test_inner_rate_heatmap_is_centred_at_zero():
  lrs = {"conv0/kernel": [0.1, -0.05], "head/kernel": [0.4, 0.2]}
  data = report.inner_lr_data({"name": "mamlpp", "inner_lrs": lrs})
  assert data.layers == list(lrs)
  fig = report.draw_inner_lrs(data)
  (image,) = fig.axes[0].get_images()
  np.testing.assert_array_equal(image.get_array(), [[0.1, -0.05],
                                                    [0.4, 0.2]])
  norm = image.norm
  assert norm.vcenter == 0 and norm.vmin == pytest.approx(-0.4)
  assert norm.vmax == pytest.approx(0.4)
  assert image.get_cmap().name == "RdBu_r"
  assert "(1 negative)" in fig.axes[0].get_title()


def test_markdown_plots_have_captions():
  md = report.render_markdown([full("maml", 0.8, 0.02)], title="t",
                              plots=["task_accuracy.png"])
  assert "![task_accuracy.png](task_accuracy.png)" in md
  assert report.caption("task_accuracy.png") in md
  assert "negative rate" in report.caption("inner_lrs_mamlpp.png")


_CHILD = textwrap.dedent("""
    import sys, tempfile
    import matplotlib
    assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
    from metalearn import report
    assert matplotlib.get_backend() == "svg", "import switched the backend"
    assert matplotlib.rcParams["backend"] == "svg"
    r = report.AlgorithmResult("mamlpp", train_loss=[1.0, 0.5],
                               test_step_loss=[1.0, 0.7],
                               inner_lrs={"head/w": [0.1, 0.2]})
    report.write_plots([r], tempfile.mkdtemp())
    assert matplotlib.get_backend() == "svg", "plots switched the backend"
    assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
    print("ok")
""")


def test_backend_is_never_switched():
  # A fresh process whose backend is svg: the old module switched it to Agg.
  env = {**os.environ, "MPLBACKEND": "svg", "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": str(ROOT)}
  proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True,
                        text=True, env=env, cwd=ROOT, check=False,
                        timeout=300)
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_backend_unchanged_in_process(tmp_path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  before = dict.__getitem__(matplotlib.rcParams, "backend")
  report.write_plots([full("maml", 0.8, 0.02)], str(tmp_path))
  assert dict.__getitem__(matplotlib.rcParams, "backend") == before


def test_compile_column_names_background_compiling_apart():
  waited = full("maml", 0.7, 0.02, compile_s=4.9)
  ahead = full("mamlpp", 0.8, 0.02, compile_s=4.9, compile_ahead_s=6.26)
  _, rows = report.table_rows([waited, ahead])
  assert [r[1] for r in rows] == ["4.9", "4.9 (+6.3 while training)"]
  # A results.json from before the field existed still reads.
  old = {k: v for k, v in waited._asdict().items() if k != "compile_ahead_s"}
  assert report.as_result(old).compile_ahead_s is None
