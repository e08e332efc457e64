"""Property-based tests of the episode sampler (``sample_tasks``, ``fixed_tasks``).

Images are small synthetic arrays whose pixels encode (class, drawing, turn),
so every sampled image says where it came from. Few examples and no
deadline: each new combination of sizes is one more compile.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import data

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

SIZE = 4
NUM_CLASSES = 5
NUM_DRAWINGS = 6
SETTINGS = hypothesis.settings(max_examples=6, deadline=None, derandomize=True)
# One marker pixel at (2, 0): where it ends up tells the 90-degree turns.
_MARK = np.zeros((SIZE, SIZE), bool)
_MARK[2, 0] = True
MARKERS = [np.rot90(_MARK, r) for r in range(4)]


def encoded_images() -> np.ndarray:
  """[C, D, 4, 4] uint8: row 0 holds class + 1, row 1 drawing + 1, marker."""
  images = np.zeros((NUM_CLASSES, NUM_DRAWINGS, SIZE, SIZE), np.uint8)
  images[:, :, 0, 1:] = np.arange(NUM_CLASSES)[:, None, None] + 1
  images[:, :, 1, 1:] = np.arange(NUM_DRAWINGS)[None, :, None] + 1
  images[:, :, 2, 0] = 200
  return images


def decode(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """[..., 4, 4, 1] -> (class, drawing, turns) of every image."""
  x = np.asarray(x)[..., 0]
  turns = sum(r * (x[..., m] == 200)[..., 0] for r, m in enumerate(MARKERS))
  flat = x.reshape(-1, SIZE, SIZE)
  upright = np.stack([np.rot90(img, -t) for img, t in zip(flat, turns.ravel())])
  upright = upright.reshape(x.shape).astype(np.int64)
  return upright[..., 0, 1] - 1, upright[..., 1, 1] - 1, turns


@st.composite
def task_sizes(draw):
  rotate = draw(st.booleans())
  n_way = draw(st.integers(1, NUM_CLASSES * (4 if rotate else 1)))
  k_shot = draw(st.integers(1, NUM_DRAWINGS - 1))
  n_query = draw(st.integers(1, NUM_DRAWINGS - k_shot))
  return dict(n_way=n_way, k_shot=k_shot, n_query=n_query, rotate=rotate)


def check_tasks(tasks, n_way, k_shot, n_query, rotate):
  """The sampler's promises, task by task."""
  s_cls, s_draw, s_turn = decode(tasks.support_x)
  q_cls, q_draw, q_turn = decode(tasks.query_x)
  s_y, q_y = np.asarray(tasks.support_y), np.asarray(tasks.query_y)
  assert s_cls.min() >= 0 and s_cls.max() < NUM_CLASSES
  if not rotate:
    assert not s_turn.any() and not q_turn.any()
  for t in range(s_y.shape[0]):
    # Labels: each of 0..n_way-1, k_shot (n_query) times, grouped by label.
    np.testing.assert_array_equal(s_y[t], np.repeat(np.arange(n_way), k_shot))
    np.testing.assert_array_equal(q_y[t], np.repeat(np.arange(n_way), n_query))
    # A label is one class in one orientation, in support and query alike;
    # no class (a turned class counts as its own class) repeats in a task.
    s_key = s_cls[t] * 4 + s_turn[t]
    q_key = q_cls[t] * 4 + q_turn[t]
    label_key = s_key[::k_shot]
    np.testing.assert_array_equal(s_key, label_key[s_y[t]])
    np.testing.assert_array_equal(q_key, label_key[q_y[t]])
    assert len(set(label_key)) == n_way
    # Support and query never share a drawing; no drawing repeats.
    support = set(zip(s_y[t], s_draw[t]))
    query = set(zip(q_y[t], q_draw[t]))
    assert not support & query
    assert len(support) == n_way * k_shot and len(query) == n_way * n_query


@SETTINGS
@hypothesis.given(sizes=task_sizes(), seed=st.integers(0, 2**31 - 1))
@hypothesis.example(sizes=dict(n_way=20, k_shot=2, n_query=4, rotate=True),
                    seed=0)
def test_sample_tasks_properties(sizes, seed):
  tasks = data.sample_tasks(jax.random.key(seed), jnp.asarray(encoded_images()),
                            batch_size=3, **sizes)
  check_tasks(tasks, **sizes)


@SETTINGS
@hypothesis.given(sizes=task_sizes(), seed=st.integers(0, 2**31 - 1))
def test_fixed_tasks_properties(sizes, seed):
  images = jnp.asarray(encoded_images())
  pool = data.fixed_tasks(seed, images, num_tasks=3, **sizes)
  check_tasks(pool, **sizes)
  again = data.fixed_tasks(seed, images, num_tasks=3, **sizes)
  for a, b in zip(pool, again):
    np.testing.assert_array_equal(a, b)
