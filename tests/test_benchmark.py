"""The benchmark runs end to end at a tiny size and reports every field."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import algorithms
from metalearn import benchmark
from metalearn import compilation_cache
from metalearn import rules
from metalearn import schedules
from metalearn.benchmark import interleave
from tests.test_sharding import child_env

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny but complete: MAML++ (learned per-step rates, per-step batch norm,
# multi-step loss) with 2 second-order inner steps on a 1-block conv net.
_TINY = benchmark.Workload("mamlpp", meta_batch_size=2, n_way=3, k_shot=1,
                           n_query=2, inner_steps=2, filters=2, num_blocks=1)


def test_parse_mode():
  assert benchmark.parse_mode("plain") == benchmark.Mode("plain", unroll=True,
                                                        conv="xla")
  assert benchmark.parse_mode("tuned+mm").conv == "matmul"
  assert benchmark.parse_mode("tuned+xla").conv == "xla"
  assert benchmark.parse_mode("tuned+everyq").every_query
  assert benchmark.parse_mode("tuned+blockremat").block_remat
  assert benchmark.parse_mode("tuned+bodyloop").body_loop
  assert benchmark.parse_mode("tuned+fastcc").fast_compile
  assert benchmark.parse_mode("tuned+oldfusion").old_fusion
  assert benchmark.parse_mode("tuned+fcpreset").fast_compile_preset
  assert benchmark.parse_mode("tuned+ynnew").ynn_elementwise
  assert benchmark.parse_mode("tuned+o1").llvm_level_1
  mode = benchmark.parse_mode("tuned+remat+spc4+shard+bf16+unroll+map")
  assert (mode.remat, mode.shard, mode.bf16, mode.unroll, mode.map) == (
      True, True, True, True, True)
  assert mode.steps_per_call == 4 and not mode.plain
  assert benchmark.parse_mode("tuned") == benchmark.Mode("tuned")
  for bad in ("fast", "tuned+spc0", "plain+remat", "tuned+nope"):
    with pytest.raises(ValueError, match="mode"):
      benchmark.parse_mode(bad)


def test_grid_and_bad_algorithm():
  ws = benchmark.grid(["maml", "fomaml"], [8, 32], inner_steps=[1, 5],
                      filters=8, steps_per_epoch=3)
  assert len(ws) == 8 and {w.meta_batch_size for w in ws} == {8, 32}
  assert {(w.filters, w.steps_per_epoch, w.msl_epochs) for w in ws} == {
      (8, 3, benchmark.Workload().msl_epochs)}
  with pytest.raises(ValueError, match="algorithm"):
    benchmark.grid(["not_an_algorithm"], [8])


@pytest.mark.parametrize("name", sorted(algorithms.ALGORITHMS))
def test_problem_follows_the_algorithm_table(name):
  alg = algorithms.get(name)
  w = _TINY._replace(algorithm=name, msl_epochs=1, steps_per_epoch=2)
  if alg.outer != rules.META_GRADIENT or alg.inner is not None:
    with pytest.raises(ValueError, match="meta-gradient"):
      benchmark.make_problem(w)
    return
  p = benchmark.make_problem(w)
  assert (p.first_order, p.learn_inner_lrs, p.step_aware) == (
      alg.first_order, alg.learn_inner_lrs, alg.per_step_bn)
  # Only ANIL's body is frozen in the inner loop.
  assert (p.inner_lrs["conv0"]["kernel"] is None) == alg.head_only
  head_rates = p.inner_lrs["head"]["kernel"].shape
  assert head_rates == ((2, *p.params["head"]["kernel"].shape)
                        if alg.per_element_lrs else (2,))
  assert (p.body_head is not None) == alg.head_only
  if not alg.multi_step_loss:
    assert p.weights_fn is None
    return
  # The shared schedule, in whole epochs of steps_per_epoch meta-steps.
  for step in (0, 1, 2, 5):
    np.testing.assert_allclose(
        p.weights_fn(step), schedules.msl_weights_fn(2, 1, 2)(step))
  np.testing.assert_allclose(p.weights_fn(1), [0.5, 0.5])
  np.testing.assert_allclose(p.weights_fn(2), [0.0, 1.0])


def test_synthetic_tasks_have_omniglot_shape():
  data = benchmark.synthetic_dataset(0, num_classes=12)
  assert data.shape == (12, 20, 28, 28) and data.dtype == jnp.uint8
  assert set(np.unique(data)) == {0, 1}  # binary, like the Omniglot cache
  tasks = benchmark.synthetic_task_fn(5, 2, 3, 4)(jax.random.key(1), data)
  assert tasks.support_x.shape == (4, 10, 28, 28, 1)
  assert tasks.query_x.shape == (4, 15, 28, 28, 1)
  np.testing.assert_array_equal(tasks.query_y[3], np.repeat(np.arange(5), 3))


def test_colour_synthetic_tasks():
  data = benchmark.synthetic_dataset(0, num_classes=6, image_size=8,
                                     channels=3)
  assert data.shape == (6, 20, 8, 8, 3) and data.dtype == jnp.uint8
  tasks = benchmark.synthetic_task_fn(3, 1, 2, 2)(jax.random.key(1), data)
  assert tasks.support_x.shape == (2, 3, 8, 8, 3)
  assert tasks.query_x.shape == (2, 6, 8, 8, 3)
  with pytest.raises(ValueError, match="channels"):
    benchmark.synthetic_dataset(0, channels=0)


# A one-block ResNet-12 on 4x4 colour images.
_TINY_RESNET = _TINY._replace(algorithm="anil", model="resnet12", widths=(2,),
                              image_size=4, channels=3, inner_steps=1)


def test_resnet12_problem():
  p = benchmark.make_problem(_TINY_RESNET)
  assert p.data.shape == (100, 20, 4, 4, 3)
  assert p.params["block0"]["shortcut_conv"]["kernel"].shape == (1, 1, 3, 2)
  # ANIL freezes every body leaf of ResNet-12 too.
  assert all(a is None for a in jax.tree.leaves(
      p.inner_lrs["block0"], is_leaf=lambda a: a is None))
  assert p.inner_lrs["head"]["kernel"].shape == (1,)
  with pytest.raises(ValueError, match="model"):
    benchmark.make_problem(_TINY_RESNET._replace(model="vgg"))
  with pytest.raises(ValueError, match="block_remat"):
    benchmark.make_problem(_TINY, block_remat=True)


def test_resnet12_row_with_block_remat():
  w = _TINY_RESNET._replace(algorithm="fomaml")
  (row,) = benchmark.run_grid([w], [benchmark.parse_mode("tuned+blockremat")],
                              benchmark.Timing(1, 1, 1))
  assert row.error is None and np.isfinite(row.final_loss)
  assert (row.model, row.widths, row.image_size, row.channels) == (
      "resnet12", "2", 4, 3)
  assert "| resnet12-2 4x4x3 |" in benchmark.markdown_table([row])


@pytest.fixture(scope="module")
def tiny_rows():
  modes = [benchmark.parse_mode("plain"), benchmark.parse_mode("tuned")]
  return benchmark.run_grid([_TINY], modes, benchmark.Timing(1, 2, 1))


def test_rows_have_every_measurement(tiny_rows):
  assert [r.mode for r in tiny_rows] == ["plain", "tuned"]
  for r in tiny_rows:
    assert r.error is None
    assert r.tasks_per_s == pytest.approx(2 / r.step_s_median)
    assert 0 < r.step_s_min <= r.step_s_p25 <= r.step_s_median
    assert r.step_s_median <= r.step_s_p75 <= r.step_s_max
    assert r.compile_s > 0 and r.xla_temp_bytes > 0 and r.peak_bytes > 0
    assert r.peak_source == "process_peak_rss"  # CPU: no device counters.
    assert (r.chunks, r.steps_per_chunk, r.devices) == (2, 1, 1)
    assert r.platform == "cpu" and np.isfinite(r.final_loss)
  plain, tuned = tiny_rows
  assert plain.speedup == 1.0
  assert tuned.speedup == pytest.approx(tuned.tasks_per_s / plain.tasks_per_s)


def test_plain_and_tuned_compute_the_same_meta_steps(tiny_rows):
  # Same seed, same tasks, same number of Adam steps: an independent
  # implementation agrees with metalearn.core, so speedups compare like
  # with like.
  plain, tuned = tiny_rows
  assert plain.final_loss == pytest.approx(tuned.final_loss, rel=1e-4)


def test_maml_rows_agree_across_implementations():
  # MAML: the baseline runs the query set once, after the last step, and so
  # does the library (no step weights); XLA and shifted-matmul convolutions
  # compute the same function.
  maml = _TINY._replace(algorithm="maml")
  modes = [benchmark.parse_mode(m) for m in ("plain", "tuned+xla",
                                             "tuned+mm", "tuned+everyq")]
  rows = benchmark.run_grid([maml], modes, benchmark.Timing(1, 1, 2))
  assert [r.conv_impl for r in rows][:3] == ["xla", "xla", "matmul"]
  for r in rows[1:]:
    assert r.final_loss == pytest.approx(rows[0].final_loss, rel=1e-4)


def test_anil_rows_agree_across_implementations():
  # ANIL: only the head adapts (None rates elsewhere) in both implementations;
  # the library runs the body once per task, or through every inner step
  # with bodyloop, and both give the plain step's result.
  anil = _TINY._replace(algorithm="anil")
  plain, tuned, loop = benchmark.run_grid(
      [anil], [benchmark.parse_mode(m)
               for m in ("plain", "tuned", "tuned+bodyloop")],
      benchmark.Timing(1, 1, 1))
  assert plain.error is None and tuned.error is None and loop.error is None
  assert plain.final_loss == pytest.approx(tuned.final_loss, rel=1e-4)
  assert plain.final_loss == pytest.approx(loop.final_loss, rel=1e-4)


def test_fast_compile_gives_the_same_step():
  # XLA's cheaper compile is a speed trade, not another computation.
  tuned, fast, preset, ynn = benchmark.run_grid(
      [_TINY._replace(algorithm="maml")],
      [benchmark.parse_mode(m)
       for m in ("tuned", "tuned+fastcc", "tuned+fcpreset", "tuned+ynnew")],
      benchmark.Timing(1, 1, 1))
  assert [r.error for r in (tuned, fast, preset, ynn)] == [None] * 4
  assert (fast.mode, preset.mode, ynn.mode) == (
      "tuned+fastcc", "tuned+fcpreset", "tuned+ynnew")
  for other in (fast, preset, ynn):
    assert other.final_loss == pytest.approx(tuned.final_loss, rel=1e-4)


def test_write_results(tiny_rows, tmp_path):
  table = benchmark.write_results(tiny_rows, str(tmp_path))
  lines = (tmp_path / "results.jsonl").read_text().splitlines()
  assert len(lines) == 2
  for line in lines:
    assert set(json.loads(line)) == set(benchmark.Row._fields)
  assert benchmark.read_results(str(tmp_path / "results.jsonl")) == list(
      tiny_rows)
  md = (tmp_path / "results.md").read_text()
  assert md == table and md.count("| mamlpp |") == 2
  assert "1.00x" in md and "process_peak_rss" in md
  benchmark.write_results(tiny_rows[:1], str(tmp_path), append=True)
  assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3


def test_interleaved_modes_take_turns_and_compute_the_same_steps(
    monkeypatch):
  # One chunk of each mode in turn, three times; every mode still runs its
  # own state through the same meta-steps.
  maml = _TINY._replace(algorithm="maml")
  modes = [benchmark.parse_mode(m) for m in ("plain", "tuned", "tuned+unroll")]
  order, real = [], interleave.time_chunk
  def spy(built, state, calls):
    order.append(id(built))
    return real(built, state, calls)
  monkeypatch.setattr(interleave, "time_chunk", spy)
  rows = benchmark.run_grid([maml], modes, benchmark.Timing(1, 3, 1),
                            interleave=True)
  assert len(order) == 9 and len(set(order)) == 3 and order == order[:3] * 3
  assert [r.mode for r in rows] == ["plain", "tuned", "tuned+unroll"]
  for r in rows:
    assert r.error is None and (r.chunks, r.steps_per_chunk) == (3, 1)
    assert 0 < r.step_s_min <= r.step_s_median <= r.step_s_max
    assert r.compile_s > 0 and r.xla_temp_bytes > 0
    # One process for all modes: no row has a peak of its own.
    assert r.peak_bytes is None
    assert r.peak_source == interleave.SHARED_PEAK
    assert r.final_loss == pytest.approx(rows[0].final_loss, rel=1e-4)
  assert rows[0].speedup == 1.0
  assert rows[2].speedup == pytest.approx(rows[2].tasks_per_s
                                          / rows[0].tasks_per_s)


def test_an_interleaved_mode_that_fails_leaves_the_others(monkeypatch):
  real = interleave.build
  def build(w, mode, problem, key):
    if mode.unroll:
      raise ValueError("no unrolling here")
    return real(w, mode, problem, key)
  monkeypatch.setattr(interleave, "build", build)
  tuned, unrolled = benchmark.run_grid(
      [_TINY._replace(algorithm="maml")],
      [benchmark.parse_mode("tuned"), benchmark.parse_mode("tuned+unroll")],
      benchmark.Timing(1, 2, 1), interleave=True)
  assert tuned.error is None and tuned.chunks == 2
  assert unrolled.error == "ValueError: no unrolling here"
  assert unrolled.tasks_per_s is None


def test_interleaved_modes_in_a_fresh_process():
  rows = benchmark.run_grid(
      [_TINY._replace(algorithm="fomaml")],
      [benchmark.parse_mode("tuned"), benchmark.parse_mode("tuned+unroll")],
      benchmark.Timing(1, 2, 1), isolate=True, interleave=True)
  assert [r.error for r in rows] == [None, None]
  assert [r.peak_source for r in rows] == [interleave.SHARED_PEAK] * 2
  assert rows[0].final_loss == pytest.approx(rows[1].final_loss, rel=1e-4)


def test_failure_becomes_an_error_row():
  bad = _TINY._replace(algorithm="not_an_algorithm")
  (row,) = benchmark.run_grid([bad], [benchmark.parse_mode("tuned")],
                              benchmark.Timing(1, 1, 1))
  assert row.error.startswith("ValueError") and row.tasks_per_s is None
  assert "error: ValueError" in benchmark.markdown_table([row])


def test_binary_reports_scaling_over_four_devices(tmp_path):
  out = tmp_path / "bench"
  cmd = [sys.executable, os.path.join(_ROOT, "experiments", "benchmark.py"),
         "--algorithms=fomaml", "--meta_batch_sizes=4", "--n_way=3",
         "--n_query=2", "--filters=2", "--num_blocks=1",
         "--modes=tuned,tuned+shard", "--warmup=1", "--chunks=1",
         "--steps_per_chunk=1", f"--output_dir={out}"]  # isolated rows
  proc = subprocess.run(cmd, env=child_env(4), capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = benchmark.read_results(str(out / "results.jsonl"))
  assert [(r.mode, r.devices) for r in rows] == [("tuned", 1),
                                                 ("tuned+shard", 4)]
  assert all(r.error is None and r.tasks_per_s > 0 for r in rows)
  assert (out / "results.md").read_text() in proc.stdout


def test_ynn_elementwise_option_moves_elementwise_ops_to_ynnpack():
  # The knob must change the program, or its measurements say nothing.
  x = jnp.ones((64, 64))
  program = jax.jit(lambda x: jnp.maximum(x, 0.0) * x.T).lower(x)
  plain = program.compile().as_text()
  ynn = program.compile(compilation_cache.YNN_ELEMENTWISE).as_text()
  assert ynn.count("__ynn_fusion") > plain.count("__ynn_fusion")
