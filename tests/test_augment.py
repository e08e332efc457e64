"""Augmentation of training tasks on the device (metalearn.data.augment)."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from metalearn import build
from metalearn import configs
from metalearn import train
from metalearn.data import augment
from metalearn.data import registry
from metalearn.types import Task


def random_tasks(seed=0, batch=2, n_way=3, k_shot=2, n_query=2, size=8,
                 channels=3):
  """A batch of tasks with positive pixels (zero marks crop padding)."""
  k_s, k_q = jax.random.split(jax.random.key(seed))
  labels = lambda per: jnp.broadcast_to(  # noqa: E731
      jnp.repeat(jnp.arange(n_way, dtype=jnp.int32), per), (batch, n_way * per))
  image = lambda k, per: jax.random.uniform(  # noqa: E731
      k, (batch, n_way * per, size, size, channels), minval=0.1, maxval=1.0)
  return Task(image(k_s, k_shot), labels(k_shot), image(k_q, n_query),
              labels(n_query))


def shifted(image, dy, dx):
  """[H, W, ch] moved down dy and right dx pixels, zeros uncovered."""
  out = np.zeros_like(image)
  h, w = image.shape[:2]
  out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = (
      image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)])
  return out


def tiny_config(**fields):
  c = configs.base()
  c.dataset, c.rotate = "synthetic", False
  c.n_way, c.k_shot, c.n_query, c.eval_n_query = 3, 1, 2, 2
  c.model, c.hidden = "mlp", (8,)
  c.meta_batch_size, c.inner_steps, c.eval_inner_steps = 2, 1, 1
  c.meta_steps, c.steps_per_call, c.steps_per_epoch = 2, 1, 1
  c.val_tasks, c.test_tasks, c.eval_every = 2, 2, 0
  c.checkpoint_every, c.progress = 0, False
  c.update(fields)
  return c


@pytest.mark.parametrize("names", [("crop",), ("flip",), ("rotate",),
                                   ("crop", "flip", "rotate")])
def test_shapes_dtypes_and_labels_are_kept_and_a_key_fixes_the_output(names):
  tasks = random_tasks()
  key = jax.random.key(3)
  out = jax.jit(augment.augment_tasks, static_argnums=2)(key, tasks, names)
  chex.assert_trees_all_equal_shapes_and_dtypes(out, tasks)
  np.testing.assert_array_equal(out.support_y, tasks.support_y)
  np.testing.assert_array_equal(out.query_y, tasks.query_y)
  chex.assert_trees_all_equal(out, augment.augment_tasks(key, tasks, names))
  assert not np.array_equal(out.support_x, tasks.support_x)
  other = augment.augment_tasks(jax.random.key(4), tasks, names)
  assert not np.array_equal(other.support_x, out.support_x)


def test_flip_is_an_involution_and_flips_exactly_when_the_key_says():
  x = random_tasks(batch=1, n_way=8, k_shot=2).support_x[0]  # [16, 8, 8, 3]
  key = jax.random.key(7)
  out = np.asarray(augment.flip_images(key, x))
  says = np.asarray(jax.random.bernoulli(key, 0.5, (x.shape[0],)))
  assert 0 < says.sum() < len(says)
  for n, flipped in enumerate(says):
    np.testing.assert_array_equal(out[n], x[n, :, ::-1] if flipped else x[n])
  np.testing.assert_array_equal(augment.flip_images(key, out), x)


@pytest.mark.parametrize("padding", [0, 1, 3])
def test_crop_shifts_the_content_by_at_most_the_padding(padding):
  x = np.asarray(random_tasks(batch=1, n_way=6, size=9).support_x[0])
  key = jax.random.key(padding)
  out = np.asarray(augment.crop_images(key, jnp.asarray(x), padding))
  assert out.shape == x.shape and out.dtype == x.dtype
  offsets = np.asarray(jax.random.randint(key, (len(x), 2), 0,
                                          2 * padding + 1))
  moves = set()
  for n in range(len(x)):
    dy, dx = padding - offsets[n]
    np.testing.assert_array_equal(out[n], shifted(x[n], dy, dx))
    # The same, without the documented offsets: some shift within the
    # padding, and no other, explains the output.
    fits = [(a, b) for a in range(-padding - 1, padding + 2)
            for b in range(-padding - 1, padding + 2)
            if np.array_equal(out[n], shifted(x[n], a, b))]
    assert fits == [(dy, dx)] and max(abs(dy), abs(dx)) <= padding
    moves.add((dy, dx))
  assert len(moves) > 1 or padding == 0


def test_rotate_turns_each_class_of_a_task_as_one():
  tasks = random_tasks(batch=3, n_way=4, k_shot=2, n_query=3)
  out = augment.augment_tasks(jax.random.key(0), tasks, ("rotate",))
  seen = set()
  for b in range(3):
    for label in range(4):
      turns = set()
      for x, y, got in ((tasks.support_x, tasks.support_y, out.support_x),
                        (tasks.query_x, tasks.query_y, out.query_x)):
        for n in np.flatnonzero(np.asarray(y[b]) == label):
          turns.add(next(r for r in range(4) if np.array_equal(
              got[b, n], jnp.rot90(x[b, n], r, axes=(0, 1)))))
      assert len(turns) == 1  # support and query of a class turn together
      seen |= turns
  assert len(seen) > 1
  with pytest.raises(ValueError, match="square"):
    augment.rotate(jax.random.key(0), Task(
        jnp.zeros((2, 4, 6, 1)), jnp.zeros((2,), jnp.int32),
        jnp.zeros((2, 4, 6, 1)), jnp.zeros((2,), jnp.int32)))


def test_bad_names_are_refused_listing_the_valid_ones():
  check = lambda **f: augment.check(tiny_config(**f))  # noqa: E731
  check(augment=("crop", "flip", "rotate"))
  with pytest.raises(ValueError, match=r"config.augment=\('crop', 'blur'\) "
                     r"is invalid: 'blur' is not an augmentation; valid "
                     r"names: crop, flip, rotate"):
    check(augment=("crop", "blur"))
  as_text = dict(tiny_config().to_dict(), augment="flip")
  with pytest.raises(ValueError, match="sequence of names.*crop, flip"):
    augment.check(ml_collections.ConfigDict(as_text))
  with pytest.raises(ValueError, match="once"):
    check(augment=("flip", "flip"))
  with pytest.raises(ValueError, match="config.rotate=True both rotate"):
    check(augment=("rotate",), rotate=True)
  with pytest.raises(ValueError, match="not images"):
    check(augment=("flip",), dataset="sinusoid", loss="mse")
  with pytest.raises(ValueError, match="config.augment="):
    build.build_experiment(tiny_config(augment=("blur",)))


def test_augmentation_changes_the_training_tasks_only():
  plain, augmented = tiny_config(), tiny_config(augment=("flip",))
  exp = build.build_experiment(plain)
  exp_aug = build.build_experiment(augmented)
  chex.assert_trees_all_equal(exp.val_tasks, exp_aug.val_tasks)
  chex.assert_trees_all_equal(exp.test_tasks, exp_aug.test_tasks)
  # The same episodes are drawn; each image is then flipped or not.
  task_fn = registry.get("synthetic").task_fn(plain)
  key = jax.random.key(5)
  drawn = task_fn(key, exp.train_data)
  got = augment.wrap(augmented, task_fn)(key, exp.train_data)
  np.testing.assert_array_equal(got.support_y, drawn.support_y)
  x, y = np.asarray(drawn.query_x), np.asarray(got.query_x)
  same = (y == x).all(axis=(2, 3, 4))
  mirrored = (y == x[:, :, :, ::-1]).all(axis=(2, 3, 4))
  assert (same | mirrored).all() and not same.all()
  assert augment.wrap(plain, task_fn) is task_fn
  # Evaluation reads only the fixed tasks: augmentation never reaches it.
  meta = build.initial_state(plain, exp).meta
  chex.assert_trees_all_equal(
      build.evaluate_meta(plain, exp, meta, exp.test_tasks).accuracy,
      build.evaluate_meta(augmented, exp_aug, meta, exp_aug.test_tasks
                         ).accuracy)


def test_a_config_with_augmentation_trains(tmp_path, monkeypatch):
  config = tiny_config(augment=("crop", "flip", "rotate"))
  traced = []
  inner = augment.augment_tasks
  monkeypatch.setattr(augment, "augment_tasks",
                      lambda *a: traced.append(a[2]) or inner(*a))
  summary, _ = train.train_and_evaluate(config, tmp_path)
  assert traced and set(traced) == {("crop", "flip", "rotate")}
  assert summary["meta_steps"] == 2
  assert 0.0 <= summary["test"]["accuracy"] <= 1.0
