"""The episode sampler on classes of unequal size (``RaggedClasses``).

Every example's pixels hold its own row index, so a sampled image says which
example it is: the tests count how often each example of each class is
drawn and check that it stays inside its class.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from metalearn import data
from metalearn.data import ragged

# 8 classes of 5 to 40 examples.
COUNTS = np.array([5, 40, 7, 23, 12, 31, 5, 18], np.int32)
K_SHOT, N_QUERY = 2, 3


def indexed_classes() -> ragged.RaggedClasses:
  """Example j is a 2x2 float image of value j."""
  n = int(COUNTS.sum())
  images = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None],
                           (n, 2, 2)).copy()
  return ragged.from_class_list(np.split(images, np.cumsum(COUNTS)[:-1]))


def class_of(rows: np.ndarray, classes: ragged.RaggedClasses) -> np.ndarray:
  return np.searchsorted(np.asarray(classes.offsets), rows, side="right") - 1


def sampled_rows(tasks):
  """(support rows [B, N, K], query rows [B, N, Q]) as integers."""
  b = tasks.support_y.shape[0]
  support = np.asarray(tasks.support_x)[..., 0, 0, 0].astype(np.int64)
  query = np.asarray(tasks.query_x)[..., 0, 0, 0].astype(np.int64)
  return support.reshape(b, -1, K_SHOT), query.reshape(b, -1, N_QUERY)


def chi2_p(observed: np.ndarray) -> float:
  """p-value of equal frequencies (with replacement: conservative here)."""
  if np.all(observed == observed[0]):
    return 1.0
  return float(stats.chisquare(observed).pvalue)


def test_every_example_of_every_class_is_drawn_uniformly():
  classes = indexed_classes()
  tasks = data.sample_tasks(jax.random.key(0), jax.device_put(classes),
                            n_way=4, k_shot=K_SHOT, n_query=N_QUERY,
                            batch_size=5000)
  support, query = sampled_rows(tasks)
  both = np.concatenate([support, query], axis=-1)  # [B, N, K+Q]
  owner = class_of(both, classes)
  # Never outside the class: one class per label, distinct within a task.
  assert np.all(owner == owner[..., :1])
  assert np.all(np.asarray(classes.offsets)[owner] <= both)
  assert np.all(both < (np.asarray(classes.offsets) + COUNTS)[owner])
  per_task = owner[..., 0]
  assert all(len(set(t)) == 4 for t in per_task)
  flat = both.reshape(both.shape[0], -1)
  assert all(len(set(t)) == flat.shape[1] for t in flat)
  # Classes: each drawn in about 4/8 of the tasks.
  assert chi2_p(np.bincount(per_task.ravel(), minlength=8)) > 1e-6
  hits = np.bincount(both.ravel(), minlength=int(COUNTS.sum()))
  support_hits = np.bincount(support.ravel(), minlength=int(COUNTS.sum()))
  for c, (start, n) in enumerate(zip(np.asarray(classes.offsets), COUNTS)):
    drawn = hits[start:start + n]
    assert drawn.min() > 0, f"class {c} never drew some examples"
    # Equal frequencies, and support and query roles given at random.
    assert chi2_p(drawn) > 1e-6, (c, drawn)
    assert chi2_p(support_hits[start:start + n]) > 1e-6, c
    expected = (per_task == c).sum() * (K_SHOT + N_QUERY) / n
    assert np.all(np.abs(drawn - expected) < 6 * np.sqrt(expected) + 1)


def test_smallest_class_is_drawn_whole_every_time():
  classes = indexed_classes()
  tasks = data.sample_tasks(jax.random.key(1), classes, n_way=8,
                            k_shot=K_SHOT, n_query=N_QUERY, batch_size=50)
  support, query = sampled_rows(tasks)
  both = np.concatenate([support, query], axis=-1)
  for task in both:
    for group in task:
      if class_of(group[:1], classes)[0] == 0:
        assert sorted(group) == list(range(5))


def test_inside_jit_and_by_task_index_stay_in_class():
  classes = jax.device_put(indexed_classes())
  draw = jax.jit(lambda key, d: data.sample_tasks(
      key, d, n_way=3, k_shot=K_SHOT, n_query=N_QUERY, batch_size=64))
  support, query = sampled_rows(draw(jax.random.key(2), classes))
  owner = class_of(np.concatenate([support, query], -1), classes)
  assert np.all(owner == owner[..., :1])


def test_too_few_examples_names_the_smallest_class():
  with pytest.raises(ValueError, match=r"must be <= 5 \(the smallest class"):
    data.sample_tasks(jax.random.key(0), indexed_classes(), n_way=2,
                      k_shot=3, n_query=3, batch_size=1)


def test_rotation_on_the_fly_equals_materialised():
  rng = np.random.default_rng(0)
  per_class = [rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
               for n in (5, 9, 6)]
  classes = ragged.from_class_list(per_class)
  sizes = dict(n_way=5, k_shot=2, n_query=2, batch_size=6)
  on_the_fly = data.sample_tasks(jax.random.key(3), classes, rotate=True,
                                 **sizes)
  materialised = data.sample_tasks(jax.random.key(3),
                                   data.rotate_classes(classes), **sizes)
  jax.tree.map(np.testing.assert_array_equal, on_the_fly, materialised)
  # uint8 with a channel axis is scaled into [0, 1].
  assert float(jnp.max(on_the_fly.support_x)) <= 1.0


def test_scaling_follows_the_channel_axis():
  per_class = [np.full((3, 2, 2), 200, np.uint8)] * 2
  gray = data.sample_tasks(jax.random.key(0), ragged.from_class_list(
      per_class), n_way=2, k_shot=1, n_query=1, batch_size=1)
  assert float(gray.support_x.max()) == 200.0
  assert gray.support_x.shape == (1, 2, 2, 2, 1)
  colour = data.sample_tasks(jax.random.key(0), ragged.from_class_list(
      [x[..., None] for x in per_class]), n_way=2, k_shot=1, n_query=1,
                             batch_size=1)
  np.testing.assert_allclose(colour.support_x, 200 / 255, rtol=1e-6)


def test_host_helpers():
  labels = np.array([2, 0, 2, 1, 0, 2])
  x = np.arange(6)[:, None, None] * np.ones((6, 2, 2))
  classes = ragged.from_labels(x, labels, 3)
  np.testing.assert_array_equal(classes.counts, [2, 1, 3])
  np.testing.assert_array_equal(classes.images[:, 0, 0], [1, 4, 3, 0, 2, 5])
  kept, dropped = ragged.at_least(classes, 2)
  np.testing.assert_array_equal(kept.counts, [2, 3])
  np.testing.assert_array_equal(dropped, [1])
  rect = ragged.from_rectangular(np.zeros((4, 3, 2, 2)))
  np.testing.assert_array_equal(rect.offsets, [0, 3, 6, 9])
  assert ragged.num_classes(rect) == 4 and ragged.image_shape(rect) == (2, 2)
