"""Adapt and predict: a tiny run on ``synthetic``, support sets of its own
width and of another, and ``experiments/predict.py`` end to end."""

import csv
import os
from pathlib import Path
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import configs
from metalearn import predict
from metalearn import predict_files
from metalearn import train
from metalearn.data import synthetic
from tests.image_trees import write_image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A 5-way conv-4 trained for 40 meta-steps on ``synthetic``."""
  c = configs.base()
  c.dataset, c.cache_dir = "synthetic", str(tmp_path_factory.mktemp("cache"))
  c.n_way, c.k_shot, c.n_query, c.eval_n_query = 5, 1, 2, 2
  c.filters, c.meta_batch_size, c.outer_lr = 8, 4, 3e-3
  c.meta_steps = 40
  c.steps_per_call = c.steps_per_epoch = c.eval_every = 20
  c.checkpoint_every = 20
  c.val_tasks, c.test_tasks = 4, 4
  c.batching, c.conv_impl, c.progress = "map", "xla", False
  workdir = tmp_path_factory.mktemp("run")
  train.train_and_evaluate(c, workdir)
  return workdir


def task(ways: int, shots: int, queries: int = 15):
  """Support / query images of ``synthetic``'s test classes, float {0, 1}
  [N, 28, 28], with string labels."""
  test = synthetic.make_splits().test.astype(np.float32)
  names = np.asarray([f"glyph-{i}" for i in range(ways)])
  return (test[:ways, :shots].reshape(-1, 28, 28), np.repeat(names, shots),
          test[:ways, shots:shots + queries].reshape(-1, 28, 28),
          np.repeat(names, queries))


def test_same_width_uses_the_learned_head(run):
  sx, sy, qx, qy = task(5, 1)
  got = predict.adapt_and_predict(run, sx, sy, qx)
  assert got.head == "learned"
  assert got.class_names == [f"glyph-{i}" for i in range(5)]
  assert got.probabilities.shape == (75, 5)
  np.testing.assert_allclose(got.probabilities.sum(-1), 1, rtol=1e-5)
  assert got.params["head"]["kernel"].shape[-1] == 5
  # Adapting helps over no step (chance: 20%).
  accuracy = np.mean(np.asarray(got.labels) == qy)
  unadapted = predict.adapt_and_predict(run, sx, sy, qx, inner_steps=0)
  assert accuracy > 0.35 and accuracy > np.mean(
      np.asarray(unadapted.labels) == qy)


def test_ten_way_support_on_a_five_way_model_gets_a_prototype_head(run):
  sx, sy, qx, qy = task(10, 5)
  got = predict.adapt_and_predict(run, sx, sy, qx)
  assert got.head == "prototypes" and got.probabilities.shape == (150, 10)
  assert got.params["head"]["kernel"].shape[-1] == 10
  # Chance is 10%; 150 queries: >= 20% is far beyond it.
  assert np.mean(np.asarray(got.labels) == qy) >= 0.2
  # Before any step the prototype head is the nearest class mean in the
  # body's feature space: softmax(-||f - c_k||^2).
  model = predict.from_workdir(run)
  start = predict.adapt_and_predict(model, sx, sy, qx, inner_steps=0,
                                    batch_norm="query")
  body = jax.jit(model.body)
  support = body(model.params, jnp.asarray(sx)[..., None])
  means = np.stack([np.asarray(support)[sy == n].mean(0)
                    for n in start.class_names])
  queries = np.asarray(body(model.params, jnp.asarray(qx)[..., None]))
  distance = ((queries[:, None] - means[None]) ** 2).sum(-1)
  expected = np.asarray(jax.nn.softmax(-distance, axis=-1))
  np.testing.assert_allclose(start.probabilities, expected, atol=2e-4)
  # The same through a tuple with the body given.
  again = predict.adapt_and_predict(
      (model.apply_fn, model.params, model.inner_lrs), sx, sy, qx,
      inner_steps=0, batch_norm="query", body=model.body)
  np.testing.assert_allclose(again.probabilities, start.probabilities,
                             atol=1e-6)


def test_support_statistics_make_each_query_independent(run):
  sx, sy, qx, _ = task(5, 2, queries=3)
  every = predict.adapt_and_predict(run, sx, sy, qx, inner_steps=1)
  one = predict.adapt_and_predict(run, sx, sy, qx[4:5], inner_steps=1)
  np.testing.assert_allclose(one.probabilities[0], every.probabilities[4],
                             atol=1e-5)


def test_errors_name_what_is_wrong(run):
  sx, sy, qx, _ = task(10, 1, queries=1)
  model = predict.from_workdir(run)
  with pytest.raises(ValueError, match="needs the model's body"):
    predict.adapt_and_predict((model.apply_fn, model.params,
                               model.inner_lrs), sx, sy, qx)
  with pytest.raises(ValueError, match="head has 5 outputs but the support "
                     "set has 10 classes"):
    predict.adapt_and_predict(model, sx, sy, qx, head="learned")
  with pytest.raises(ValueError, match=r"images of shape \(14, 14, 1\)"):
    predict.adapt_and_predict(model, sx[:, ::2, ::2], sy, qx)
  with pytest.raises(ValueError, match="at least 2 classes"):
    predict.adapt_and_predict(model, sx[:1], sy[:1], qx)
  with pytest.raises(ValueError, match="no config.json"):
    predict.adapt_and_predict(run / "nowhere", sx, sy, qx)


def test_the_binary_writes_csv_and_figure(run, tmp_path):
  sx, sy, qx, qy = task(3, 2, queries=2)
  for i, (x, y) in enumerate(zip(sx, sy)):
    write_image(tmp_path / "support" / y / f"{i}.png",
                (x * 255).astype(np.uint8))
  for i, x in enumerate(qx):
    write_image(tmp_path / "query" / ("more" if i % 2 else "") / f"q{i}.png",
                (x * 255).astype(np.uint8))
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  done = subprocess.run(
      [sys.executable, str(REPO / "experiments" / "predict.py"),
       f"--workdir={run}", f"--support_dir={tmp_path / 'support'}",
       f"--query_dir={tmp_path / 'query'}", f"--output_dir={tmp_path / 'out'}",
       "--nocompilation_cache"],
      env=env, capture_output=True, text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "6 queries, 3 classes (prototypes head)" in done.stdout
  with open(tmp_path / "out" / "predictions.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["file"] for r in rows] == sorted(
      ("more/" if i % 2 else "") + f"q{i}.png" for i in range(6))
  assert set(rows[0]) == {"file", "predicted", "probability", "p:glyph-0",
                          "p:glyph-1", "p:glyph-2"}
  for r in rows:
    p = [float(r[f"p:glyph-{i}"]) for i in range(3)]
    assert abs(sum(p) - 1) < 1e-3 and r["predicted"] in {
        f"glyph-{i}" for i in range(3)}
    assert float(r["probability"]) == max(p)
  figure = tmp_path / "out" / "predictions.png"
  assert figure.stat().st_size > 1000


def test_figure_titles_wrap_long_class_names():
  # Omniglot-style names are wider than a figure column.
  assert predict_files._wrap("Japanese_(hiragana)__char06") == (
      "Japanese_(hiragana\n)__char06")
  assert predict_files._wrap("glyph-0") == "glyph-0"
  assert predict_files._wrap(3) == "3"
