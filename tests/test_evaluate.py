"""Evaluation on a fixed task set against an independent numpy computation."""

import json
import math

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

import metalearn as ml
from metalearn import evaluate as evaluate_lib
from tests import helpers

# One model for the module: ``apply`` is a static argument of the compiled
# chunk, so sharing it lets tests with the same shapes share one compile.
MODEL = helpers.tiny_model()
NUM_TASKS = 7


def step_rates(rates):
  """Per-tensor inner rates with the given value at each step."""
  params = MODEL.init(jax.random.key(0))
  return jax.tree.map(lambda _: jnp.asarray(rates, jnp.float32), params)


@jax.jit
def _adapted_query_logits(params, inner_lrs, task):
  adapted, _ = ml.adapt(MODEL.apply, params, inner_lrs, task)
  return MODEL.apply(adapted, task.query_x)


def numpy_reference(params, inner_lrs, tasks):
  """Per-task, per-step query accuracy and loss, scored with numpy.

  Each task adapts alone (a Python loop over tasks) with the rates cut to
  the first k steps, for every k; the adapted model's query logits are then
  scored with numpy.

  Returns:
    (accuracy, loss), each [num_tasks, inner_steps].
  """
  inner_steps = jax.tree.leaves(inner_lrs)[0].shape[0]
  acc = np.zeros((NUM_TASKS, inner_steps))
  loss = np.zeros((NUM_TASKS, inner_steps))
  for i in range(NUM_TASKS):
    task = jax.tree.map(lambda x, i=i: x[i], tasks)
    labels = np.asarray(task.query_y)
    for k in range(1, inner_steps + 1):
      first_k = jax.tree.map(lambda a, k=k: a[:k], inner_lrs)
      logits = np.asarray(_adapted_query_logits(params, first_k, task),
                          np.float64)
      top = logits.max(axis=-1, keepdims=True)
      log_probs = logits - top - np.log(
          np.exp(logits - top).sum(axis=-1, keepdims=True))
      acc[i, k - 1] = np.mean(logits.argmax(axis=-1) == labels)
      loss[i, k - 1] = -np.mean(log_probs[np.arange(labels.size), labels])
  return acc, loss


class EvaluateTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = MODEL.init(jax.random.key(0))
    # Few support examples and a small rate: adaptation is partial, so the
    # accuracy varies across tasks and across steps.
    cls.tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=NUM_TASKS,
                                   shots=1, queries=3)
    cls.lrs = step_rates([0.3, 0.5])

  def evaluate(self, inner_lrs=None, **kw):
    kw.setdefault("inner_steps", 2)
    return evaluate_lib.evaluate(
        MODEL.apply, self.params,
        self.lrs if inner_lrs is None else inner_lrs, self.tasks, **kw)

  def assert_results_close(self, got, expected):
    self.assertEqual((got.num_tasks, got.inner_steps),
                     (expected.num_tasks, expected.inner_steps))
    for name in ("task_accuracy", "task_step_loss", "step_accuracy",
                 "step_loss"):
      np.testing.assert_allclose(getattr(got, name), getattr(expected, name),
                                 rtol=1e-5, atol=1e-6, err_msg=name)
    for name in ("accuracy", "ci95", "std", "loss"):
      np.testing.assert_allclose(getattr(got, name), getattr(expected, name),
                                 rtol=1e-5, atol=1e-7, err_msg=name)

  def test_matches_numpy_over_independently_adapted_tasks(self):
    result = self.evaluate()
    acc, loss = numpy_reference(self.params, self.lrs, self.tasks)
    final = acc[:, -1]
    self.assertGreater(np.std(final), 0)  # else the CI check proves little
    self.assertEqual((result.num_tasks, result.inner_steps), (NUM_TASKS, 2))
    chex.assert_shape([result.task_accuracy], (NUM_TASKS,))
    chex.assert_shape([result.task_step_loss], (NUM_TASKS, 2))
    chex.assert_shape([result.step_accuracy, result.step_loss], (2,))
    np.testing.assert_allclose(result.task_accuracy, final, atol=1e-6)
    np.testing.assert_allclose(result.task_step_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(result.step_accuracy, acc.mean(axis=0),
                               atol=1e-6)
    np.testing.assert_allclose(result.step_loss, loss.mean(axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(result.accuracy, final.mean(), atol=1e-6)
    np.testing.assert_allclose(result.loss, loss[:, -1].mean(), rtol=1e-5)
    np.testing.assert_allclose(result.std, np.std(final), atol=1e-6)
    np.testing.assert_allclose(
        result.ci95, 1.96 * np.std(final) / math.sqrt(NUM_TASKS), atol=1e-6)
    summary = result.summary()
    self.assertEqual(json.loads(json.dumps(summary)), summary)
    self.assertEqual(summary["inner_steps"], 2)
    self.assertEqual(summary["num_tasks"], NUM_TASKS)
    self.assertNotIn("num_steps", summary)
    self.assertNotIn("task_accuracy", summary)
    table = evaluate_lib.format_table(result)
    self.assertIn(f"{NUM_TASKS} tasks", table)
    self.assertIn("2 inner steps", table)

  @parameterized.parameters(3, 4)
  def test_padded_chunks_equal_one_chunk(self, chunk_size):
    # 7 tasks in chunks of 3 (3 + 3 + 1 padded) or 4 (4 + 3 padded).
    self.assertNotEqual(NUM_TASKS % chunk_size, 0)
    self.assert_results_close(self.evaluate(chunk_size=chunk_size),
                              self.evaluate(chunk_size=NUM_TASKS))

  def test_chunk_larger_than_the_task_set(self):
    self.assert_results_close(self.evaluate(chunk_size=1000),
                              self.evaluate(chunk_size=NUM_TASKS))

  def test_longer_inner_steps_repeat_the_last_rate(self):
    result = self.evaluate(inner_steps=4)
    self.assertEqual(result.inner_steps, 4)
    chex.assert_shape(result.task_step_loss, (NUM_TASKS, 4))
    explicit = step_rates([0.3, 0.5, 0.5, 0.5])
    self.assert_results_close(
        result, self.evaluate(inner_lrs=explicit, inner_steps=4))
    acc, loss = numpy_reference(self.params, explicit, self.tasks)
    np.testing.assert_allclose(result.task_step_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(result.task_accuracy, acc[:, -1], atol=1e-6)
    # Repeating the first rate instead would be told apart.
    first = self.evaluate(inner_lrs=step_rates([0.3] * 4), inner_steps=4)
    self.assertFalse(np.allclose(first.task_step_loss[:, 2:],
                                 result.task_step_loss[:, 2:], rtol=1e-4))

  def test_fewer_inner_steps_cut_the_rates(self):
    result = self.evaluate(inner_steps=1)
    self.assertEqual(result.inner_steps, 1)
    acc, loss = numpy_reference(self.params, step_rates([0.3]), self.tasks)
    np.testing.assert_allclose(result.task_step_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(result.task_accuracy, acc[:, -1], atol=1e-6)

  def test_map_equals_vmap(self):
    self.assert_results_close(self.evaluate(batching="map"),
                              self.evaluate(batching="vmap"))

  def test_auto_batching_maps_on_cpu(self):
    self.assertEqual(evaluate_lib.resolve_batching("auto"),
                     "map" if jax.default_backend() == "cpu" else "vmap")
    for given in ("vmap", "map"):
      self.assertEqual(evaluate_lib.resolve_batching(given), given)

  @parameterized.parameters(0, -1)
  def test_bad_inner_steps(self, inner_steps):
    with self.assertRaisesRegex(ValueError, "inner_steps"):
      self.evaluate(inner_steps=inner_steps)

  def test_bad_batching(self):
    with self.assertRaisesRegex(ValueError, "batching.*'pmap'"):
      self.evaluate(batching="pmap")


def test_step_aware_model_uses_each_steps_batch_norm():
  # Per-step batch norm with distinct per-step affines: evaluate passes the
  # step index, as a task-by-task adapt does.
  model = ml.models.conv4(3, input_shape=(6, 6, 1), filters=2, num_blocks=1,
                          bn_steps=2)
  params = model.init(jax.random.key(0))
  params["norm0"]["scale"] = jnp.array([[1.0, 1.0], [3.0, -2.0]])
  lrs = ml.fixed_inner_lrs(params, 0.3, 2)
  key_s, key_q = jax.random.split(jax.random.key(4))
  labels = jnp.tile(jnp.arange(3), (5, 2))
  tasks = ml.Task(jax.random.normal(key_s, (5, 6, 6, 6, 1)), labels,
                  jax.random.normal(key_q, (5, 6, 6, 6, 1)), labels)
  run = lambda p: evaluate_lib.evaluate(model.apply, p, lrs, tasks,
                                        inner_steps=2, step_aware=True)
  result = run(params)
  one_task = jax.jit(lambda p, t: ml.adapt(model.apply, p, lrs, t,
                                           step_aware=True)[1].loss)
  expected = np.stack([one_task(params, jax.tree.map(lambda x, i=i: x[i],
                                                     tasks))
                       for i in range(5)])
  np.testing.assert_allclose(result.task_step_loss, expected, rtol=1e-5)
  # With the step-1 row equal to the step-0 row the last step's losses
  # change: the step-1 row is the one used at step 1.
  same_rows = dict(params, norm0=dict(
      params["norm0"], scale=jnp.ones((2, 2), jnp.float32)))
  other = run(same_rows)
  np.testing.assert_allclose(other.task_step_loss[:, 0],
                             result.task_step_loss[:, 0], rtol=1e-5)
  assert not np.allclose(other.task_step_loss[:, -1],
                         result.task_step_loss[:, -1], rtol=1e-4)
