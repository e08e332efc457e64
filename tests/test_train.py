"""train_and_evaluate at tiny sizes: on the synthetic dataset (no cache to
build), and end to end on the real cached Omniglot."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from metalearn import configs
from metalearn import build
from metalearn import train
from metalearn import trainer


def tiny(config, cache_dir, **overrides):
  config.cache_dir = str(cache_dir)
  config.dataset = "synthetic"  # Omniglot-shaped, generated in memory.
  config.n_way, config.k_shot, config.n_query, config.eval_n_query = 3, 1, 2, 2
  config.filters = 4
  config.meta_batch_size = 2
  config.meta_steps = 12
  config.steps_per_call = 4
  config.eval_every = config.checkpoint_every = 6
  config.val_tasks, config.test_tasks = 6, 6
  config.steps_per_epoch = 4
  config.batching = "map"
  # Compile time dominates at this size, and XLA convolutions compile faster
  # than shifted matmuls (56 vs 82 s for a MAML++ run); the two are tested
  # equal in test_models.
  config.conv_impl = "xla"
  config.outer_lr = 3e-3
  config.progress = False
  for k, v in overrides.items():
    config[k] = v
  return config


def maml_config(cache_dir, **kw):
  return tiny(configs.base(), cache_dir, **kw)


def mamlpp_config(cache_dir, **kw):
  c = configs.mamlpp("5w1s")
  settings = dict(inner_steps=2, eval_inner_steps=2, msl_epochs=2,
                  first_order_epochs=0,
                  ensemble_top_k=1)  # The ensemble: tests/test_ensemble.py.
  return tiny(c, cache_dir, **{**settings, **kw})


def read_jsonl(path):
  return [json.loads(l) for l in path.read_text().splitlines()]


def test_smoke_writes_every_output_and_learns(tmp_path, omniglot_cache_dir):
  config = maml_config(omniglot_cache_dir, meta_steps=40, steps_per_call=10,
                       eval_every=20, checkpoint_every=20, outer_lr=1e-2,
                       dataset="vinyals")  # the real data, end to end
  summary, _ = train.train_and_evaluate(config, tmp_path)
  for name in ("config.json", "metrics.jsonl", "eval.json"):
    assert (tmp_path / name).is_file(), name
  assert any((tmp_path / "checkpoints").iterdir())
  assert any((tmp_path / "best").iterdir())
  events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert events and events[0].stat().st_size > 0
  rows = read_jsonl(tmp_path / "metrics.jsonl")
  train_rows = [r for r in rows if "loss" in r]
  val_rows = [r for r in rows if "val_accuracy" in r]
  assert [r["step"] for r in train_rows] == [10, 20, 30, 40]
  assert [r["step"] for r in val_rows] == [20, 40]
  assert train_rows[-1]["loss"] < train_rows[0]["loss"]
  saved = json.loads((tmp_path / "eval.json").read_text())
  assert saved == json.loads(json.dumps(summary))
  test = saved["test"]
  assert test["num_tasks"] == 6 and test["inner_steps"] == 3
  assert len(test["step_accuracy"]) == 3
  assert 0.0 <= test["accuracy"] <= 1.0 and test["ci95"] >= 0.0


def test_resume_matches_uninterrupted_run(tmp_path, omniglot_cache_dir):
  straight = tmp_path / "straight"
  train.train_and_evaluate(maml_config(omniglot_cache_dir), straight)
  resumed = tmp_path / "resumed"
  train.train_and_evaluate(maml_config(omniglot_cache_dir, meta_steps=6),
                           resumed)
  train.train_and_evaluate(maml_config(omniglot_cache_dir), resumed)
  a = json.loads((straight / "eval.json").read_text())
  b = json.loads((resumed / "eval.json").read_text())
  assert b["meta_steps"] == 12
  np.testing.assert_allclose(a["test"]["step_loss"], b["test"]["step_loss"],
                             rtol=1e-5)
  losses = lambda d: [r["loss"] for r in read_jsonl(d / "metrics.jsonl")
                      if "loss" in r and r["step"] > 6]
  np.testing.assert_allclose(losses(straight), losses(resumed), rtol=1e-5)


def _final_state(config, workdir):
  """Trains, then restores the latest checkpoint's state."""
  train.train_and_evaluate(config, workdir)
  state = build.initial_state(config, build.build_experiment(config))
  return train.checkpoints.Checkpointer(workdir).restore_latest(state)


def test_derivative_order_annealing_starts_first_order(tmp_path,
                                                       omniglot_cache_dir):
  # First epoch (4 steps) first-order: the same as first-order MAML++.
  annealed = mamlpp_config(omniglot_cache_dir, meta_steps=4,
                           first_order_epochs=1, checkpoint_every=4)
  first = mamlpp_config(omniglot_cache_dir, meta_steps=4, checkpoint_every=4)
  first.algorithm = "mamlpp_first_order"
  second = mamlpp_config(omniglot_cache_dir, meta_steps=4, checkpoint_every=4)
  a = _final_state(annealed, tmp_path / "a")
  b = _final_state(first, tmp_path / "b")
  c = _final_state(second, tmp_path / "c")
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6),
               a.meta, b.meta)
  assert not np.allclose(a.meta.params["conv0"]["kernel"],
                         c.meta.params["conv0"]["kernel"], rtol=1e-4)
  assert build.build_plan(annealed).phase_at(3).first_order
  assert not build.build_plan(annealed).phase_at(4).first_order


def test_mamlpp_switches_change_what_they_should(tmp_path, omniglot_cache_dir):
  c = mamlpp_config(omniglot_cache_dir)
  params = build.build_model(c).init(jax.random.key(0))
  # Per-step batch norm: one affine row per inner step, frozen in the inner
  # loop; convolutions adapt with one rate per tensor per step.
  assert params["norm0"]["scale"].shape == (2, 4)
  lrs = build.build_inner_lrs(c, params)
  assert lrs["norm0"]["scale"] is None and lrs["conv0"]["kernel"].shape == (2,)
  # Multi-step loss for msl_epochs epochs; plain MAML never has one.
  assert build.build_plan(c).msl_end == c.msl_epochs * c.steps_per_epoch
  assert build.build_plan(maml_config(omniglot_cache_dir)).msl_end == 0
  # The learned inner rates move during MAML++ training; MAML's stay fixed.
  final = _final_state(c, tmp_path / "pp")
  assert not np.allclose(final.meta.inner_lrs["conv0"]["kernel"], 0.1)
  fixed = _final_state(mamlpp_config(omniglot_cache_dir, algorithm="maml"),
                       tmp_path / "fixed")
  np.testing.assert_allclose(fixed.meta.inner_lrs["conv0"]["kernel"], 0.1)


def test_multi_step_loss_ends_without_changing_the_result(
    tmp_path, omniglot_cache_dir, monkeypatch):
  # msl_epochs=1 x 4 iterations: steps 0-3 weigh both inner steps, steps 4-11
  # run the query set once. The same run with the multi-step program kept to
  # the end (its weights are one-hot there) must land on the same parameters.
  config = lambda: mamlpp_config(omniglot_cache_dir, msl_epochs=1,
                                 checkpoint_every=12, eval_every=12)
  switched = _final_state(config(), tmp_path / "switched")
  rows = [r for r in read_jsonl(tmp_path / "switched" / "metrics.jsonl")
          if "loss" in r]
  assert [(r["step"], r["multi_step_loss"]) for r in rows] == [
      (4, True), (8, False), (12, False)]
  plan = build.build_plan
  monkeypatch.setattr(build, "build_plan",
                      lambda c: plan(c)._replace(msl_end=c.meta_steps))
  kept = _final_state(config(), tmp_path / "kept")
  # Conv biases are left out: batch norm cancels them, so their gradient is
  # float noise (~1e-7) that Adam scales up to full-size steps.
  def check(path, x, y):
    if not jax.tree_util.keystr(path).endswith("['bias']") or "head" in (
        jax.tree_util.keystr(path)):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6,
                                 err_msg=jax.tree_util.keystr(path))
  jax.tree_util.tree_map_with_path(check, switched.meta, kept.meta)
  test = lambda d: json.loads((tmp_path / d / "eval.json").read_text())["test"]
  np.testing.assert_allclose(test("switched")["step_loss"],
                             test("kept")["step_loss"], rtol=1e-4)


def test_outer_rate_follows_cosine_schedule(omniglot_cache_dir):
  # Adam's update for a constant unit gradient is about -lr(step), so the
  # updates trace the schedule: outer_lr at the start, near outer_lr_min at
  # the end.
  c = mamlpp_config(omniglot_cache_dir)
  opt = build.build_optimizer(c)
  params = {"w": np.zeros(())}
  state = opt.init(params)
  sizes = []
  for _ in range(c.meta_steps):
    updates, state = opt.update({"w": np.ones(())}, state, params)
    sizes.append(-float(updates["w"]))
  np.testing.assert_allclose(sizes[0], c.outer_lr, rtol=1e-3)
  expected = build.optax.cosine_decay_schedule(
      c.outer_lr, c.meta_steps, alpha=c.outer_lr_min / c.outer_lr)
  np.testing.assert_allclose(sizes[-1], expected(c.meta_steps - 1), rtol=1e-3)
  assert sizes[-1] < 0.1 * sizes[0]
  constant = build.build_optimizer(maml_config(omniglot_cache_dir))
  updates, _ = constant.update({"w": np.ones(())},
                               constant.init(params), params)
  np.testing.assert_allclose(-float(updates["w"]), 3e-3, rtol=1e-3)


@pytest.mark.parametrize("field,value,words", [
    ("algorithm", "not_an_algorithm", ["config.algorithm", "maml, fomaml"]),
    ("dataset", "imagenet", ["config.dataset", "lake", "vinyals", "tfds"]),
    ("seed", -1, ["config.seed=-1", ">= 0"]),
    ("inner_steps", 0, ["config.inner_steps=0", ">= 1"]),
    ("eval_inner_steps", 0, ["config.eval_inner_steps=0", ">= 1"]),
    ("meta_batch_size", -2, ["config.meta_batch_size", ">= 1"]),
    ("outer_lr", 0.0, ["config.outer_lr", "> 0"]),
    ("inner_lr", -0.1, ["config.inner_lr", "> 0"]),
    ("n_query", 20, ["config.n_query", "[1, 19]"]),
    ("lr_schedule", "step", ["config.lr_schedule", "constant, cosine"]),
    ("batching", "pmap", ["config.batching"]),
    ("conv_impl", "cudnn", ["config.conv_impl", "auto, xla, matmul"]),
    ("compute_dtype", "float16", ["config.compute_dtype", "float32, bfloat16"]),
])
def test_invalid_config_fails_before_compiling(tmp_path, field, value, words):
  config = configs.base()
  config[field] = value
  with pytest.raises(ValueError) as err:
    train.train_and_evaluate(config, tmp_path)
  for word in words:
    assert word in str(err.value)
  assert not (tmp_path / "metrics.jsonl").exists()


def test_n_way_too_large_for_split(tmp_path, omniglot_cache_dir):
  config = maml_config(omniglot_cache_dir, n_way=500, dataset="mamlpp")
  with pytest.raises(ValueError, match=r"config.n_way=500.*val.*\[2, 50\]"):
    train.train_and_evaluate(config, tmp_path)


def test_nan_stops_run_and_keeps_last_checkpoint(tmp_path, omniglot_cache_dir):
  good = maml_config(omniglot_cache_dir, meta_steps=4, checkpoint_every=4)
  train.train_and_evaluate(good, tmp_path)
  before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  bad = maml_config(omniglot_cache_dir, meta_steps=12, outer_lr=1e30,
                    checkpoint_every=4, allow_config_change=True)
  with pytest.raises(FloatingPointError,
                     match="meta-loss became.*checkpoint \\(meta-step 4\\)"):
    train.train_and_evaluate(bad, tmp_path)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_nan_on_a_fresh_run_says_no_checkpoint(tmp_path, omniglot_cache_dir):
  # An inner step of 1e38 overflows float32 at once: the first loss is nan.
  bad = maml_config(omniglot_cache_dir, meta_steps=4, outer_lr=1e30,
                    inner_lr=1e38)
  with pytest.raises(FloatingPointError, match="No checkpoint was written"):
    train.train_and_evaluate(bad, tmp_path)


def test_bad_workdir_is_named(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("")
  with pytest.raises(ValueError, match="workdir=.*is a file"):
    train.train_and_evaluate(configs.base(), a_file)
  with pytest.raises(ValueError, match="workdir=.*cannot be created"):
    train.train_and_evaluate(configs.base(), a_file / "below")


def test_time_budget_stops_and_evaluates(tmp_path, omniglot_cache_dir):
  config = maml_config(omniglot_cache_dir, meta_steps=400, steps_per_call=4,
                       max_train_seconds=1e-9, eval_every=0)
  summary, _ = train.train_and_evaluate(config, tmp_path)
  assert summary["stopped_by_time_budget"] and summary["meta_steps"] == 4
  assert summary["test"]["num_tasks"] == 6
  # The stop saved a checkpoint, so a rerun continues from it.
  assert train.checkpoints.Checkpointer(tmp_path).latest_step() == 4


def test_best_checkpoint_is_the_best_validation_step(tmp_path,
                                                     omniglot_cache_dir):
  config = maml_config(omniglot_cache_dir, meta_steps=12, eval_every=4,
                       val_tasks=30)
  summary, _ = train.train_and_evaluate(config, tmp_path)
  accuracy = {r["step"]: r["val_accuracy"]
              for r in read_jsonl(tmp_path / "metrics.jsonl")
              if "val_accuracy" in r}
  assert sorted(accuracy) == [4, 8, 12] and len(set(accuracy.values())) > 1
  assert summary["used_best_checkpoint"]
  ckpt = train.checkpoints.Checkpointer(tmp_path)
  template = build.initial_state(config,
                                      build.build_experiment(config))
  best = int(ckpt.restore_best(template).step)
  assert accuracy[best] == max(accuracy.values()), (best, accuracy)


def test_anil_adapts_only_the_head(tmp_path, omniglot_cache_dir):
  config = mamlpp_config(omniglot_cache_dir, algorithm="anil", meta_steps=4,
                         checkpoint_every=4)
  exp = build.build_experiment(config)
  start = build.initial_state(config, exp)
  lrs = start.meta.inner_lrs
  assert lrs["conv0"]["kernel"] is None and lrs["norm0"]["scale"] is None
  assert lrs["head"]["kernel"].shape == (2,)
  assert start.meta.params["norm0"]["scale"].ndim == 1  # no per-step BN
  final = _final_state(config, tmp_path)
  # The outer loop still trains the body through the head's adaptation.
  assert not np.allclose(final.meta.params["conv0"]["kernel"],
                         start.meta.params["conv0"]["kernel"])


def test_sigterm_saves_and_the_rerun_matches(tmp_path, omniglot_cache_dir,
                                             monkeypatch):
  straight = _final_state(maml_config(omniglot_cache_dir, eval_every=4),
                          tmp_path / "straight")
  row = train._train_row
  def signal_once(chunk, tasks):
    if chunk.end == 4:
      os.kill(os.getpid(), signal.SIGTERM)
    return row(chunk, tasks)
  monkeypatch.setattr(train, "_train_row", signal_once)
  config = maml_config(omniglot_cache_dir, eval_every=4)
  with pytest.raises(trainer.Interrupted, match="meta-step 4 by SIGTERM"):
    train.train_and_evaluate(config, tmp_path / "stopped")
  assert (train.checkpoints.Checkpointer(tmp_path / "stopped").latest_step()
          == 4)
  monkeypatch.setattr(train, "_train_row", row)
  resumed = _final_state(config, tmp_path / "stopped")
  jax.tree.map(np.testing.assert_array_equal, straight, resumed)
  rows = read_jsonl(tmp_path / "stopped" / "metrics.jsonl")
  for kind in ("loss", "val_accuracy"):  # each step once, in order
    steps = [r["step"] for r in rows if kind in r]
    assert steps == sorted(set(steps)) and steps[-1] == 12, (kind, steps)
  # A rerun of the finished run trains and validates nothing again.
  train.train_and_evaluate(config, tmp_path / "stopped")
  assert read_jsonl(tmp_path / "stopped" / "metrics.jsonl") == rows


def _sinusoid_config(algorithm, **overrides):
  # The CPU example's config at a few thousand meta-steps: enough to learn.
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "sinusoid_config", os.path.join(os.path.dirname(__file__), "..",
                                      "experiments", "configs",
                                      "sinusoid.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(f"{algorithm}:10")
  config.meta_steps, config.steps_per_call = 3000, 500
  config.eval_every = config.checkpoint_every = 0
  config.val_tasks, config.test_tasks = 0, 100
  config.progress = False
  config.update(overrides)
  return config


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_sinusoid_config_learns_regression(tmp_path, algorithm):
  # Below 1.0 after 10 steps is better than the pretrained-on-all-tasks
  # baseline ever gets (docs/benchmarks.md; tests/test_sinusoid.py compares
  # MAML with it directly).
  summary, test = train.train_and_evaluate(_sinusoid_config(algorithm), tmp_path)
  assert test.accuracy is None and summary["test"]["accuracy"] is None
  assert test.step_loss.shape == (10,)
  assert test.step_loss[-1] < test.step_loss[0]
  assert test.loss < 1.0, test.loss
