"""``metalearn.data.from_arrays``: labelled arrays as class-major data, and
as ``train_maml``'s training input."""

import jax
import numpy as np
import pytest

import metalearn as ml
from metalearn import api
from metalearn import data
from metalearn.models import conv4

# 6 classes of unequal size, string labels, in shuffled order.
SIZES = {"cat": 5, "dog": 9, "emu": 6, "fox": 12, "gnu": 5, "owl": 7}


def labelled(seed=0, size=8):
  """uint8 [N, size, size] images whose pixels hold their class index + 1,
  shuffled, with string labels."""
  rng = np.random.default_rng(seed)
  y = np.concatenate([[name] * n for name, n in SIZES.items()])
  x = np.stack([np.full((size, size), 40 * (1 + list(SIZES).index(l)),
                        np.uint8) for l in y])
  order = rng.permutation(len(y))
  return x[order], y[order]


def test_labels_become_classes_of_unequal_size():
  x, y = labelled()
  episodes = data.from_arrays(x, y, n_way=3, k_shot=2, n_query=3)
  assert list(episodes.class_names) == sorted(SIZES)
  np.testing.assert_array_equal(episodes.classes.counts,
                                [SIZES[n] for n in sorted(SIZES)])
  assert episodes.classes.images.shape == (len(y), 8, 8, 1)
  assert episodes.classes.images.dtype == np.uint8
  # Every class's rows hold that class's images.
  for c, (start, n) in enumerate(zip(episodes.classes.offsets,
                                     episodes.classes.counts)):
    rows = episodes.classes.images[start:start + n]
    assert np.all(rows == 40 * (1 + list(SIZES).index(sorted(SIZES)[c])))
  tasks = data.sample_tasks(jax.random.key(0), episodes.classes,
                            batch_size=20, **episodes.sizes())
  support = np.asarray(tasks.support_x)[..., 0, 0, 0].reshape(20, 3, 2)
  query = np.asarray(tasks.query_x)[..., 0, 0, 0].reshape(20, 3, 3)
  both = np.concatenate([support, query], axis=-1)
  assert np.all(both == both[..., :1])  # one class per label
  assert float(tasks.support_x.max()) <= 1.0  # uint8 scaled into [0, 1]


def test_integer_labels_and_float_images():
  x, y = labelled()
  ints = np.unique(y, return_inverse=True)[1] * 10
  episodes = data.from_arrays(x[..., None] / np.float32(255), ints,
                              n_way=2, k_shot=1, n_query=4)
  assert episodes.class_names.tolist() == [0, 10, 20, 30, 40, 50]
  assert episodes.classes.images.dtype == np.float32
  with pytest.warns(UserWarning, match=r"\[0, 1\] is expected"):
    data.from_arrays(x.astype(np.float32), y, n_way=2, k_shot=1, n_query=1)


def test_errors_name_the_argument():
  x, y = labelled()
  with pytest.raises(ValueError, match=r"k_shot \+ n_query = 7 examples; 3 "
                     r"of 6 have fewer: 'cat' \(5\), 'emu' \(6\), 'gnu'"):
    data.from_arrays(x, y, n_way=2, k_shot=2, n_query=5)
  with pytest.raises(ValueError, match="y must be one label per image"):
    data.from_arrays(x, y[:-1])
  with pytest.raises(ValueError, match="n_way=7 is more than the 6 classes"):
    data.from_arrays(x, y, n_way=7, k_shot=1, n_query=1)
  with pytest.raises(ValueError, match="uint8 .* or float"):
    data.from_arrays(x.astype(np.int64), y, k_shot=1, n_query=1)
  with pytest.raises(ValueError, match="meta_batch_size must be an integer"):
    api.train_maml(conv4(3, input_shape=(8, 8, 1), filters=2),
                   data.from_arrays(x, y, n_way=3, k_shot=1, n_query=1),
                   meta_batch_size=0, meta_steps=1, progress=False)


def test_train_maml_takes_labelled_arrays():
  x, y = labelled(size=16)
  tasks = data.from_arrays(x, y, n_way=3, k_shot=1, n_query=2)
  result = api.train_maml(
      conv4(3, input_shape=(16, 16, 1), filters=4, conv_impl="xla"), tasks,
      meta_steps=6, meta_batch_size=3, inner_steps=1, inner_lr=0.4,
      outer_lr=0.01, batching="map", progress=False)
  assert result.losses.shape == (6,) and np.all(np.isfinite(result.losses))
  assert result.stats.tasks == 18
  assert isinstance(result, ml.TrainResult)
