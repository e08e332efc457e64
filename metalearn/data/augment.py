"""Augmentation of training tasks on the device: crop, flip, rotate.

``config.augment`` names the augmentations applied, in that order, to every
batch of training tasks inside the compiled meta-step: :func:`wrap` wraps a
dataset's ``task_fn``, and :func:`metalearn.build.step_builder` uses it.
Validation and test tasks are fixed sets drawn once by the dataset and are
never augmented. Each augmentation is a pure function ``(key, task) ->
task`` of one task (``AUGMENTATIONS``); :func:`augment_tasks` applies them
to a batch, task ``i`` with ``fold_in(key, i)``, so the same key gives the
same output. Shapes and dtypes are kept.

* ``crop``: every image (support and query) padded with ``padding`` pixels
  of zeros on each side and cropped back to H x W at a uniformly random
  offset, so its content moves by at most ``padding`` pixels along each
  axis (the default ``H // 8``, at least 1: 4 for 32x32, 3 for Omniglot's
  28x28, 10 for 84x84). Zero is Omniglot's background and black in colour
  images.
* ``flip``: every image mirrored left-right with probability 1/2.
* ``rotate``: every class of a task (all its support and query images)
  turned by the same random multiple of 90 degrees (square images only).

``rotate`` turns the classes a task has drawn; ``config.rotate`` instead
samples classes from 4 C rotated classes (:mod:`metalearn.data.episodes`),
so one character may appear in a task twice, turned differently. Both are
class rotations, so a config may use only one of them. ``rotate`` (like
``crop`` and ``flip``) also works with a fixed ``config.train_pool``, whose
tasks ``config.rotate`` turns only once, when the pool is drawn.
"""

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from metalearn.data import episodes
from metalearn.data import registry
from metalearn.types import Task

Array = jax.Array
TaskFn = registry.TaskFn
# The augmentation key is fold_in(key, SALT) of the key the tasks are drawn
# with, so switching augmentation on leaves the drawn tasks unchanged.
SALT = 0x61756731


def crop_images(key: Array, x: Array, padding: int) -> Array:
  """Random crops of zero-padded images.

  Args:
    key: PRNG key; image ``n`` is cut at offset ``(dy, dx) =
      randint(key, (N, 2), 0, 2 padding + 1)[n]`` of the padded image.
    x: images [N, H, W, ch].
    padding: pixels of zeros added on every side, >= 0.

  Returns:
    [N, H, W, ch]: image ``n`` shifted down by ``padding - dy`` and right by
    ``padding - dx`` pixels, zeros where the shift uncovers it.
  """
  n, height, width, channels = x.shape
  padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding),
                       (0, 0)))
  offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)
  cut = lambda image, at: jax.lax.dynamic_slice(  # noqa: E731
      image, (at[0], at[1], 0), (height, width, channels))
  return jax.vmap(cut)(padded, offsets)


def flip_images(key: Array, x: Array) -> Array:
  """Images [N, H, W, ch], image ``n`` mirrored left-right exactly when
  ``jax.random.bernoulli(key, 0.5, (N,))[n]``."""
  flip = jax.random.bernoulli(key, 0.5, x.shape[:1])
  return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


def _both(images_fn: Callable[[Array, Array], Array]
         ) -> Callable[[Array, Task], Task]:
  """A per-image augmentation of one task: support with the first half of
  ``split(key)``, query with the second."""
  def apply(key: Array, task: Task) -> Task:
    support_key, query_key = jax.random.split(key)
    return task._replace(support_x=images_fn(support_key, task.support_x),
                         query_x=images_fn(query_key, task.query_x))
  return apply


def crop(key: Array, task: Task, padding: Optional[int] = None) -> Task:
  """One task [S or Q, H, W, ch] with every image cropped
  (:func:`crop_images`; ``padding`` default ``max(1, H // 8)``)."""
  if padding is None:
    padding = max(1, task.support_x.shape[1] // 8)
  return _both(lambda k, x: crop_images(k, x, padding))(key, task)


def flip(key: Array, task: Task) -> Task:
  """One task with every image flipped or not (:func:`flip_images`)."""
  return _both(flip_images)(key, task)


def rotate(key: Array, task: Task) -> Task:
  """One task with class ``y``'s images turned ``turns[y]`` times by 90
  degrees, ``turns = randint(key, (S,), 0, 4)`` (S support images bound
  the labels: every class has one), support and query alike.

  Raises:
    ValueError: the images are not square.
  """
  height, width = task.support_x.shape[1:3]
  if height != width:
    raise ValueError(f"the 'rotate' augmentation needs square images; got "
                     f"{height}x{width}")
  turns = jax.random.randint(key, task.support_y.shape[:1], 0, 4)

  def turned(x, y):
    return episodes.turn(x, turns[y].reshape(-1, 1, 1, 1), axes=(1, 2))
  return task._replace(support_x=turned(task.support_x, task.support_y),
                       query_x=turned(task.query_x, task.query_y))


# name -> (key, one task) -> task.
AUGMENTATIONS: dict[str, Callable[[Array, Task], Task]] = {
    "crop": crop,
    "flip": flip,
    "rotate": rotate,
}


def augment_tasks(key: Array, tasks: Task, names: Sequence[str]) -> Task:
  """A batch of tasks [B, ...] with the ``names`` augmentations applied in
  order: task ``i``'s ``j``-th with ``fold_in(fold_in(key, i), j)``."""
  fns = [AUGMENTATIONS[name] for name in names]
  if not fns:
    return tasks

  def one(i, task):
    task_key = jax.random.fold_in(key, i)
    for j, fn in enumerate(fns):
      task = fn(jax.random.fold_in(task_key, j), task)
    return task
  index = jnp.arange(tasks.support_y.shape[0], dtype=jnp.uint32)
  return jax.vmap(one)(index, tasks)


def names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """``config.augment`` as a tuple (empty when the config has no field)."""
  return tuple(config.get("augment", ()))


def check(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming ``config.augment`` unless it is a sequence of
  distinct names of ``AUGMENTATIONS`` that the dataset's images allow."""
  value = config.get("augment", ())
  fail = lambda why: registry.config_error("augment", value, why)  # noqa: E731
  valid = ", ".join(AUGMENTATIONS)
  if isinstance(value, str) or not all(isinstance(n, str) for n in value):
    raise fail(f"must be a sequence of names, e.g. ('crop', 'flip'); valid "
               f"names: {valid}")
  chosen = tuple(value)
  for name in chosen:
    if name not in AUGMENTATIONS:
      raise fail(f"{name!r} is not an augmentation; valid names: {valid}")
  if len(set(chosen)) != len(chosen):
    raise fail("each name may appear once")
  if not chosen:
    return
  shape = tuple(registry.get(config.dataset).input_shape(config))
  if len(shape) != 3:
    raise fail(f"dataset {config.dataset!r} has inputs of shape {shape}, "
               "not images (H, W, channels)")
  if "rotate" in chosen and shape[0] != shape[1]:
    raise fail(f"'rotate' needs square images; dataset {config.dataset!r} "
               f"has {shape[0]}x{shape[1]}")
  if "rotate" in chosen and config.rotate:
    raise fail("'rotate' and config.rotate=True both rotate classes by 90 "
               "degrees; use one (--config.rotate=false to keep 'rotate')")


def wrap(config: ml_collections.ConfigDict, task_fn: TaskFn) -> TaskFn:
  """``task_fn`` followed by ``config.augment`` (after :func:`check`); the
  same ``task_fn`` when that is empty.

  The tasks are drawn with the key given; the augmentations use
  ``fold_in(key, SALT)``, so the tasks themselves do not change.
  """
  check(config)
  chosen = names(config)
  if not chosen:
    return task_fn

  def augmented(key: Array, data) -> Task:
    tasks = task_fn(key, data)
    return augment_tasks(jax.random.fold_in(key, SALT), tasks, chosen)
  return augmented
