"""Data is checked once at the door: non-finite refused, odd ranges warned."""

import warnings

import jax
import numpy as np
import pytest

import metalearn
from metalearn import api_inputs
from metalearn import data_checks
from metalearn.types import Task


def pool(tasks=4, n_way=3, size=8, scale=1.0):
  rng = np.random.default_rng(0)
  shape = (tasks, n_way, size, size, 1)
  x = lambda: (rng.random(shape) * scale).astype(np.float32)  # noqa: E731
  y = np.tile(np.arange(n_way, dtype=np.int32), (tasks, 1))
  return Task(x(), y, x(), y.copy())


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
  monkeypatch.setattr(data_checks, "_warned", set())


def test_nan_in_a_pool_is_refused_by_train_maml_naming_array_and_index():
  tasks = pool()
  tasks.query_x[2, 1, 3, 4, 0] = np.nan
  model = metalearn.models.Conv4(n_way=3, filters=4)
  with pytest.raises(ValueError, match=r"tasks \(a fixed pool\)\.query_x "
                     r"holds 1 non-finite.*nan at index \[2, 1, 3, 4, 0\]"):
    metalearn.train_maml(model, tasks, meta_steps=1)


def test_inf_in_a_sampler_batch_is_refused():
  bad = pool()
  bad.support_x[0, 0, 0, 0, 0] = np.inf
  with pytest.raises(ValueError, match=r"sampler's output\)\.support_x.*"
                     r"inf at index \[0, 0, 0, 0, 0\]"):
    api_inputs.resolve_tasks(lambda key: bad, None, None, jax.random.key(0))


def test_images_given_as_0_to_255_warn_once():
  tasks = pool(scale=255.0)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    api_inputs.resolve_tasks(tasks, None, None, jax.random.key(0))
  messages = [str(w.message) for w in caught
              if issubclass(w.category, data_checks.RangeWarning)]
  assert len(messages) == 1, messages
  assert "support_x has values from " in messages[0]
  assert "expected in [0, 1] (0..255: divide by 255)" in messages[0]
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # A second look does not warn again.
    api_inputs.resolve_tasks(tasks, None, None, jax.random.key(0))


def test_images_in_range_do_not_warn():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    api_inputs.resolve_tasks(pool(), None, None, jax.random.key(0))


def test_labels_out_of_range_are_named():
  tasks = pool()
  tasks.query_y[1, 2] = 7
  with pytest.raises(ValueError, match=r"query_y must hold labels in "
                     r"\[0, 3\); got 7 at index \[1, 2\]"):
    data_checks.check_task_batch(tasks, "tasks")


def test_class_major_images_follow_the_documented_scaling():
  grey = np.zeros((2, 3, 8, 8), np.uint8)
  data_checks.check_images("omniglot", grey)  # {0, 1}: fine
  colour = np.full((2, 3, 8, 8, 3), 255, np.uint8)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    data_checks.check_images("colour", colour)  # uint8 colour: scaled later
  with pytest.warns(data_checks.RangeWarning, match="grey255"):
    data_checks.check_images("grey255", grey + 255)
  floats = np.zeros((2, 3, 8, 8), np.float32)
  floats[1, 2, 0, 5] = np.nan
  with pytest.raises(ValueError, match=r"task_data\['images'\] .*"
                     r"index \[1, 2, 0, 5\]"):
    data_checks.check_data("task_data", {"images": floats})
  with pytest.raises(ValueError, match="uint8 or float"):
    data_checks.check_images("ints", grey.astype(np.int64))
