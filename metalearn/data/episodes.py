"""Few-shot episodes sampled on device with ``jax.random``.

``images`` is a class-major array: grayscale [C, D, H, W] (for Omniglot the
uint8 cache [C, 20, 28, 28] in {0, 1}) or colour [C, D, H, W, channels] (for
mini-ImageNet the uint8 cache [C, 600, 84, 84, 3] in 0..255); put it on the
device once (``jax.device_put``) and sample inside the jitted training step,
so the host never sits in the hot loop.

Pixel scaling: grayscale images are cast to float32 unchanged (Omniglot stays
{0, 1}); colour uint8 images are scaled into [0, 1] by multiplying by
float32(1 / 255) (255 gives exactly 1.0); colour images of any other dtype are
cast unchanged.

Classes of unequal size come as a :class:`metalearn.data.ragged.RaggedClasses`
(flat images [N, H, W(, ch)] with per-class offsets and counts); the sampler
then draws each class's ``k_shot + n_query`` examples without replacement,
uniformly from that class's own count (Floyd's algorithm, then a random
order), with no padding and no bias. Grayscale is ``[N, H, W]`` there, and
``[N, H, W, ch]`` uint8 is scaled as colour is.

Rotation augmentation treats the class space as 4 C classes: class
``r * C + c`` is class ``c`` turned ``r`` times by 90 degrees
(``jnp.rot90`` over the H, W axes). ``sample_tasks(..., rotate=True)`` draws
from that space on the fly; ``rotate_classes`` materialises the same array.
"""

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from metalearn.data import ragged
from metalearn.types import Task

Array = jax.Array


def rotate_classes(images):
  """[C, D, H, W(, ch)] -> [4 C, D, H, W(, ch)]; class r * C + c is c turned r
  times (over the H, W axes).

  Works on numpy (stays on host) and jax arrays alike, and on
  ``RaggedClasses`` (on the host).
  """
  if ragged.is_ragged(images):
    return ragged.rotate_classes(images)
  xp = jnp if isinstance(images, jax.Array) else np
  return xp.concatenate([xp.rot90(images, r, axes=(2, 3)) for r in range(4)])


def turn(x: Array, turns: Array, axes: tuple[int, int]) -> Array:
  """``x`` turned by 90 degrees ``turns`` times (as ``jnp.rot90``) over the
  two image ``axes``, each slice by its own count (traced counts are fine).

  Args:
    x: images with square ``axes``, e.g. [N, H, W, ch].
    turns: integers in [0, 4), broadcastable to ``x``, e.g. [N, 1, 1, 1].
    axes: the (H, W) axes of ``x``.

  Returns:
    An array shaped and typed like ``x``.
  """
  return functools.reduce(
      lambda acc, r: jnp.where(turns == r, jnp.rot90(x, r, axes=axes), acc),
      range(1, 4), x)


def _check_size(name: str, value, low: int, high: int, why: str = "") -> None:
  if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
      or not low <= value <= high):
    raise ValueError(f"{name}={value!r} is out of range: must be an integer in "
                     f"[{low}, {high}]{why}")


def _concrete_counts(images) -> np.ndarray | None:
  """A ragged set's counts on the host, or None while they are traced."""
  try:
    return np.asarray(images.counts)
  except (jax.errors.TracerArrayConversionError,
          jax.errors.ConcretizationTypeError):
    return None


def _check_ragged_sizes(images, n_way, k_shot, n_query, rotate) -> None:
  """The sizes against a ``RaggedClasses``; its counts only when concrete."""
  pixels = images.images
  if pixels.ndim not in (3, 4) or images.counts.ndim != 1 or (
      images.offsets.shape != images.counts.shape):
    raise ValueError(f"RaggedClasses must hold images [N, H, W] or "
                     f"[N, H, W, channels] and offsets, counts [C]; got "
                     f"shapes {pixels.shape}, {images.offsets.shape}, "
                     f"{images.counts.shape}")
  height, width = pixels.shape[1:3]
  if rotate and height != width:
    raise ValueError(f"rotate=True needs square images; got {height}x{width}")
  space = images.counts.shape[0] * (4 if rotate else 1)
  _check_size("n_way", n_way, 1, space,
              f" (the number of classes in images{', x4 rotations' * rotate})")
  _check_size("k_shot", k_shot, 1, np.iinfo(np.int32).max)
  _check_size("n_query", n_query, 1, np.iinfo(np.int32).max)
  counts = _concrete_counts(images)
  if counts is not None and k_shot + n_query > counts.min():
    raise ValueError(f"k_shot + n_query = {k_shot} + {n_query} = "
                     f"{k_shot + n_query} is out of range: must be <= "
                     f"{counts.min()} (the smallest class, class "
                     f"{int(np.argmin(counts))})")


def _check_task_sizes(images, n_way, k_shot, n_query, rotate) -> None:
  if ragged.is_ragged(images):
    return _check_ragged_sizes(images, n_way, k_shot, n_query, rotate)
  if images.ndim not in (4, 5):
    raise ValueError(f"images must be [classes, drawings, height, width] or "
                     f"[classes, drawings, height, width, channels]; got "
                     f"shape {images.shape}")
  num_classes, num_drawings, height, width = images.shape[:4]
  if rotate and height != width:
    raise ValueError(f"rotate=True needs square images; got {height}x{width}")
  space = num_classes * (4 if rotate else 1)
  _check_size("n_way", n_way, 1, space,
              f" (the number of classes in images{', x4 rotations' * rotate})")
  _check_size("k_shot", k_shot, 1, num_drawings - 1,
              f" (with n_query >= 1, {num_drawings} drawings per class)")
  _check_size("n_query", n_query, 1, num_drawings - 1,
              f" (with k_shot >= 1, {num_drawings} drawings per class)")
  if k_shot + n_query > num_drawings:
    raise ValueError(f"k_shot + n_query = {k_shot} + {n_query} = "
                     f"{k_shot + n_query} is out of range: must be <= "
                     f"{num_drawings} (drawings per class)")


def _distinct(key: Array, shape: tuple[int, ...], n: int, k: int) -> Array:
  """[*shape, k] distinct indices in [0, n) in uniformly random order."""
  return jax.lax.top_k(jax.random.uniform(key, (*shape, n)), k)[1]


def _ragged_rows(key: Array, images: ragged.RaggedClasses, classes: Array,
                 m: int) -> Array:
  """[*classes.shape, m] rows of ``images.images``: m distinct examples of
  each class, uniform over that class's own count, in random order.

  Floyd's algorithm: step i draws t uniform in [0, n - m + i] and keeps it,
  or n - m + i when t was kept before; this gives every m-subset of [0, n)
  the same chance. A uniform permutation then orders the subset. A class
  with fewer than m examples (only possible when the counts were traced and
  so not checked) repeats examples but never leaves the class.
  """
  counts = images.counts[classes]  # [B, N]
  draw_key, order_key = jax.random.split(key)
  steps = jnp.arange(m, dtype=counts.dtype).reshape((1,) * counts.ndim + (m,))
  top = counts[..., None] - m + steps  # [B, N, m]
  drawn = jax.random.randint(draw_key, top.shape, 0,
                             jnp.maximum(top, 0) + 1, dtype=counts.dtype)

  def step(i, picked):
    taken = jnp.any(picked == drawn[..., i, None], axis=-1)
    return picked.at[..., i].set(jnp.where(taken, top[..., i],
                                           drawn[..., i]))
  picked = jax.lax.fori_loop(0, m, step, jnp.full_like(drawn, -1))
  order = _distinct(order_key, classes.shape, m, m)
  picked = jnp.take_along_axis(picked, order, axis=-1)
  picked = jnp.clip(picked, 0, counts[..., None] - 1)
  return images.offsets[classes][..., None] + picked


def sample_tasks(key: Array, images, *, n_way: int, k_shot: int,
                 n_query: int, batch_size: int, rotate: bool = False) -> Task:
  """Draws a batch of N-way K-shot tasks; pure, sizes static (jitted after
  the size checks, so it may be called inside another jitted function).

  Per task: ``n_way`` distinct classes, ``k_shot + n_query`` distinct drawings
  of each (support and query are disjoint), labels 0..n_way-1 given to the
  classes in random order. Examples are grouped by label: support label of
  row i is ``i // k_shot``, query label of row i is ``i // n_query``.

  Args:
    key: PRNG key; the same key gives the same tasks.
    images: [C, D, H, W] grayscale (uint8 {0, 1} for Omniglot, cast
      unchanged) or [C, D, H, W, ch] colour (uint8 0..255 for mini-ImageNet,
      scaled by 1/255 into [0, 1]) class-major images; or a
      :class:`~metalearn.data.ragged.RaggedClasses` of classes of unequal
      size (images [N, H, W] or [N, H, W, ch], scaled alike).
    n_way: classes per task, in [1, C] (or [1, 4 C] with ``rotate``).
    k_shot: support drawings per class, >= 1.
    n_query: query drawings per class, >= 1, ``k_shot + n_query <= D`` (the
      smallest class's count for ``RaggedClasses``; checked when the counts
      are concrete, i.e. unless called inside another traced function).
    batch_size: number of tasks, >= 1.
    rotate: sample from the 4 C classes of 90-degree rotations.

  Returns:
    ``Task`` with support_x float32 [B, n_way * k_shot, H, W, ch] (ch = 1
    for grayscale images), support_y int32 [B, n_way * k_shot], query_x
    float32 [B, n_way * n_query, H, W, ch], query_y int32
    [B, n_way * n_query].
  """
  _check_task_sizes(images, n_way, k_shot, n_query, rotate)
  _check_size("batch_size", batch_size, 1, np.iinfo(np.int32).max)
  return _sample_tasks(key, images, n_way=n_way, k_shot=k_shot,
                       n_query=n_query, batch_size=batch_size, rotate=rotate)


@functools.partial(jax.jit, static_argnames=("n_way", "k_shot", "n_query",
                                             "batch_size", "rotate"))
def _sample_tasks(key: Array, images, *, n_way: int, k_shot: int,
                  n_query: int, batch_size: int, rotate: bool) -> Task:
  """``sample_tasks`` after its checks."""
  is_ragged = ragged.is_ragged(images)
  pixels = images.images if is_ragged else images
  num_classes = ragged.num_classes(images)
  height, width = ragged.image_shape(images)[:2]
  grayscale = pixels.ndim == (3 if is_ragged else 4)
  channels = 1 if grayscale else pixels.shape[-1]
  class_key, drawing_key = jax.random.split(key)
  class_space = num_classes * (4 if rotate else 1)
  classes = _distinct(class_key, (batch_size,), class_space, n_way)
  # [B, N, K+Q, H, W(, ch)]
  if is_ragged:
    x = pixels[_ragged_rows(drawing_key, images, classes % num_classes,
                            k_shot + n_query)]
  else:
    drawings = _distinct(drawing_key, (batch_size, n_way), pixels.shape[1],
                         k_shot + n_query)
    x = pixels[(classes % num_classes)[..., None], drawings]
  if rotate:
    turns = classes // num_classes  # [B, N] -> [B, N, 1, 1, 1(, 1)]
    turns = turns.reshape(turns.shape + (1,) * (x.ndim - 2))
    x = turn(x, turns, axes=(3, 4))
  x = x.astype(jnp.float32)
  if grayscale:
    x = x[..., None]
  elif pixels.dtype == np.uint8:
    x = x * np.float32(1 / 255)  # The same bits on every backend.
  labels = jnp.arange(n_way, dtype=jnp.int32)

  def flat(part, per_class):
    return (part.reshape(batch_size, n_way * per_class, height, width,
                         channels),
            jnp.broadcast_to(jnp.repeat(labels, per_class),
                             (batch_size, n_way * per_class)))

  support_x, support_y = flat(x[:, :, :k_shot], k_shot)
  query_x, query_y = flat(x[:, :, k_shot:], n_query)
  return Task(support_x, support_y, query_x, query_y)


def fixed_tasks(seed_or_key, images, *, num_tasks: int, n_way: int,
                k_shot: int, n_query: int, rotate: bool = False) -> Task:
  """A fixed pool of tasks, drawn once (e.g. 200 to train on, 600 to test on).

  Args:
    seed_or_key: int seed or PRNG key; the same value gives the same pool.
    images: [C, D, H, W] or [C, D, H, W, ch] class-major images, or a
      ``RaggedClasses``; see ``sample_tasks``.
    num_tasks: pool size, >= 1.
    n_way, k_shot, n_query, rotate: as in ``sample_tasks``.

  Returns:
    ``Task`` with leading axis ``num_tasks`` (float32 images: the pool takes
    ``num_tasks * n_way * (k_shot + n_query) * H * W * ch * 4`` bytes).
  """
  _check_size("num_tasks", num_tasks, 1, np.iinfo(np.int32).max)
  if isinstance(seed_or_key, numbers.Integral):
    seed_or_key = jax.random.key(int(seed_or_key))
  return sample_tasks(seed_or_key, images, n_way=n_way, k_shot=k_shot,
                      n_query=n_query, batch_size=num_tasks, rotate=rotate)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def sample_from_pool(key: Array, pool: Task, batch_size: int) -> Task:
  """Draws ``batch_size`` distinct tasks from a pool (jitted, pure).

  Args:
    key: PRNG key.
    pool: ``Task`` with a leading [num_tasks] axis (see ``fixed_tasks``).
    batch_size: tasks to draw, in [1, num_tasks].

  Returns:
    ``Task`` with leading axis ``batch_size``.
  """
  num_tasks = pool.support_y.shape[0]
  _check_size("batch_size", batch_size, 1, num_tasks,
              " (the number of tasks in pool)")
  index = _distinct(key, (), num_tasks, batch_size)
  return jax.tree.map(lambda x: x[index], pool)
