"""MAML++'s test-time ensemble: top-k checkpoints, averaged probabilities."""

import json
import logging
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import checkpoints
from metalearn import config_checks
from metalearn import configs
from metalearn import ensemble
from metalearn import evaluate
from metalearn import fingerprint
from metalearn import runs
from metalearn import train
from metalearn.objectives import OBJECTIVES
from metalearn.objectives import REGRESSION
from metalearn.step import MetaState
from metalearn.types import MetaParams
from tests import helpers


# The probability average.

def test_combine_averages_probabilities_not_logits():
  # Mean logits pick class 0; mean probabilities pick class 1.
  a = np.array([[[0.0, 5.0, 0.0]]], np.float32)   # [T=1, Q=1, 3]
  b = np.array([[[1.0, -30.0, 0.0]]], np.float32)
  labels = np.array([[1]], np.int32)
  loss, acc = ensemble.combine([a, b], labels)
  np.testing.assert_array_equal(acc, [1.0])
  probs = (jax.nn.softmax(a[0, 0]) + jax.nn.softmax(b[0, 0])) / 2
  np.testing.assert_allclose(loss, [-np.log(probs[1])], rtol=1e-5)
  assert int(np.argmax(a + b)) == 0  # What averaging logits would say.


def test_combine_averages_regression_outputs():
  a, b = np.ones((2, 3, 1), np.float32), 3 * np.ones((2, 3, 1), np.float32)
  targets = np.zeros((2, 3, 1), np.float32)
  loss, metric = ensemble.combine([a, b], targets, REGRESSION)
  np.testing.assert_allclose(loss, [4.0, 4.0])
  assert metric is None


def _linear(params, x):
  return x @ params["w"] + params["b"][None, :]


def _softmax(logits):
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def _hand_probs(params, lr, steps, task):
  """SGD on the support cross-entropy in numpy (its gradient in closed
  form), then the query probabilities."""
  w, b = (np.asarray(params[k], np.float64) for k in ("w", "b"))
  x, y = np.asarray(task.support_x, np.float64), np.asarray(task.support_y)
  onehot = np.eye(w.shape[1])[y]
  for _ in range(steps):
    err = (_softmax(x @ w + b) - onehot) / len(y)
    w, b = w - lr * x.T @ err, b - lr * err.sum(axis=0)
  return _softmax(np.asarray(task.query_x, np.float64) @ w + b)


def test_ensemble_equals_hand_computation_over_members():
  tasks = helpers.tiny_tasks(jax.random.key(0), num_tasks=5, shots=2,
                             queries=4)
  steps, lr = 2, 0.3
  members = []
  for seed in range(3):
    kw, kb = jax.random.split(jax.random.key(10 + seed))
    params = {"w": jax.random.normal(kw, (4, 3)),
              "b": 0.5 * jax.random.normal(kb, (3,))}
    members.append(MetaParams(params, jax.tree.map(
        lambda _: jnp.full((steps,), lr), params)))
  got = ensemble.evaluate_ensemble(_linear, members, tasks,
                                   inner_steps=steps, steps=(30, 20, 10),
                                   chunk_size=2)  # 5 tasks: a padded chunk.
  accs, losses = [], []
  for t in range(5):
    task = jax.tree.map(lambda x, t=t: x[t], tasks)
    probs = np.mean([_hand_probs(m.params, lr, steps, task)
                     for m in members], axis=0)
    labels = np.asarray(task.query_y)
    accs.append(np.mean(np.argmax(probs, axis=1) == labels))
    losses.append(-np.mean(np.log(probs[np.arange(len(labels)), labels])))
  np.testing.assert_allclose(got.task_accuracy, accs)
  np.testing.assert_allclose(got.task_loss, losses, rtol=1e-4)
  assert got.accuracy == pytest.approx(np.mean(accs))
  assert got.ci95 == pytest.approx(1.96 * np.std(accs) / np.sqrt(5))
  assert (got.k, got.steps, got.num_tasks) == (3, (30, 20, 10), 5)
  # Each member alone scores as the evaluation of that member does.
  for m, acc in zip(members, got.member_accuracy):
    alone = evaluate.evaluate(_linear, m.params, m.inner_lrs, tasks,
                              inner_steps=steps)
    assert acc == pytest.approx(alone.accuracy)
  assert json.loads(json.dumps(got.summary()))["steps"] == [30, 20, 10]


def _step_aware(params, x, step):
  return x @ params["w"] + (step + 1.0) * params["b"][None, :]


@pytest.mark.parametrize("objective", ["cross_entropy", "mse"])
def test_each_member_scores_as_its_evaluation(objective):
  # A step-aware model (per-step batch norm's signature): the outputs are
  # taken at the last inner step, as the evaluation's metrics are.
  tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=3)
  if objective == "mse":
    tasks = tasks._replace(query_y=jax.nn.one_hot(tasks.query_y, 3),
                           support_y=jax.nn.one_hot(tasks.support_y, 3))
  params = {"w": jax.random.normal(jax.random.key(2), (4, 3)),
            "b": jnp.ones(3)}
  member = MetaParams(params, jax.tree.map(lambda _: jnp.full((2,), 0.1),
                                           params))
  kw = dict(inner_steps=3, step_aware=True, objective=OBJECTIVES[objective])
  got = ensemble.evaluate_ensemble(_step_aware, [member], tasks, **kw)
  alone = evaluate.evaluate(_step_aware, params, member.inner_lrs, tasks,
                            **kw)
  assert got.member_loss[0] == pytest.approx(alone.loss, rel=1e-5)
  assert got.loss == pytest.approx(alone.loss, rel=1e-5)
  if objective == "mse":
    assert got.accuracy is None and got.member_accuracy is None
  else:
    np.testing.assert_allclose(got.task_accuracy, alone.task_accuracy)


# Keeping the k best checkpoints.

def _state(step):
  params = {"w": jnp.full((8, 3), float(step))}
  return MetaState(jnp.int32(step), MetaParams(params, {"w": jnp.ones(1)}),
                   ())


def _ranked(scores, k):
  """The top k steps by (score, step), best first."""
  return [s for _, s in sorted(((v, s) for s, v in scores.items()),
                               reverse=True)[:k]]


@pytest.mark.parametrize("k", [1, 3])
def test_keeps_the_k_best_as_scores_arrive_in_any_order(tmp_path, k):
  values = [0.3, 0.9, 0.1, 0.7, 0.5, 0.9, 0.2, 0.8, 0.7]
  random.Random(k).shuffle(values)
  ckpt = checkpoints.Checkpointer(tmp_path, best_k=k)
  seen = {}
  for i, value in enumerate(values):
    step = 10 * (i + 1)
    ckpt.save_best(step, _state(step), value)
    ckpt.wait()
    seen[step] = value
    assert ckpt.best_steps() == _ranked(seen, k), seen
    on_disk = sorted(int(p.name) for p in (tmp_path / "best").iterdir()
                     if p.name.isdigit())
    assert on_disk == sorted(_ranked(seen, k))
  # A fresh Checkpointer (a resumed run) sees the same list.
  again = checkpoints.Checkpointer(tmp_path, best_k=k)
  got = again.restore_best_k(_state(0), k)
  assert [s for s, _ in got] == _ranked(seen, k)
  for step, state in got:
    assert int(state.step) == step
  assert int(again.restore_best(_state(0)).step) == _ranked(seen, 1)[0]


def test_damaged_member_is_skipped_and_set_aside(tmp_path, caplog):
  ckpt = checkpoints.Checkpointer(tmp_path, best_k=3)
  for step, value in ((1, 0.5), (2, 0.9), (3, 0.7)):
    ckpt.save_best(step, _state(step), value)
  ckpt.wait()
  files = [p for p in (tmp_path / "best" / "3" / "state").rglob("*")
           if p.is_file() and "d" in p.parent.name]
  target = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  data[len(data) // 2] ^= 0xFF
  target.write_bytes(bytes(data))
  with caplog.at_level(logging.WARNING, logger="metalearn.checkpoints"):
    got = checkpoints.Checkpointer(tmp_path, best_k=3).restore_best_k(
        _state(0), 3)
  assert [s for s, _ in got] == [2, 1]
  warnings = [r.getMessage() for r in caplog.records
              if r.name == "metalearn.checkpoints"]
  assert len(warnings) == 1 and "step 3" in warnings[0]
  assert (tmp_path / "unusable" / "best" / "3").is_dir()


def test_config_field():
  assert configs.base().ensemble_top_k == 1
  assert configs.mamlpp("5w1s").ensemble_top_k == 5
  assert configs.maml("5w1s").ensemble_top_k == 1
  assert "ensemble_top_k" in fingerprint.TRAINING_FIELDS
  bad = configs.base()
  bad.ensemble_top_k = 0
  with pytest.raises(ValueError, match="config.ensemble_top_k=0"):
    config_checks.validate_config(bad)


# End to end: train_and_evaluate writes the ensemble beside the single best.

def _config(tmp_path, meta_steps):
  c = configs.base()
  c.update(dict(
      dataset="synthetic", cache_dir=str(tmp_path / "cache"), n_way=3,
      k_shot=1, n_query=2, eval_n_query=2, filters=4, meta_batch_size=2,
      meta_steps=meta_steps, steps_per_call=2, eval_every=2,
      checkpoint_every=2, val_tasks=6, test_tasks=6, inner_steps=1,
      eval_inner_steps=2, batching="map", conv_impl="xla", outer_lr=3e-3,
      progress=False, ensemble_top_k=3))
  return c


def test_train_writes_the_ensemble_and_a_resume_keeps_its_top_k(tmp_path):
  workdir = tmp_path / "run"

  def check(summary):
    vals = runs.read_metrics(workdir).val
    want = _ranked({r["step"]: r["val_accuracy"] for r in vals}, 3)
    got = summary["test_ensemble"]
    assert got["steps"] == want and got["k"] == 3
    assert got["num_tasks"] == 6 and 0.0 <= got["accuracy"] <= 1.0
    assert got["ci95"] >= 0.0 and got["std"] >= 0.0
    assert sorted(int(p.name) for p in (workdir / "best").iterdir()
                  if p.name.isdigit()) == sorted(want)
    # The single best keeps its keys: the ensemble's first member alone.
    assert summary["used_best_checkpoint"]
    assert summary["test"]["accuracy"] == pytest.approx(
        got["member_accuracy"][0])
    assert json.loads((workdir / "eval.json").read_text()) == json.loads(
        json.dumps(summary))

  first, _ = train.train_and_evaluate(_config(tmp_path, 6), workdir)
  check(first)
  resumed, _ = train.train_and_evaluate(_config(tmp_path, 12), workdir)
  assert resumed["resumed_from"] == 6
  assert [r["step"] for r in runs.read_metrics(workdir).val] == [
      2, 4, 6, 8, 10, 12]
  check(resumed)
