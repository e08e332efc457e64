"""Episodes of any way and shot, as Meta-Dataset draws them, in one shape.

With ``config.min_n_way`` (0: off) each training episode has ``way``
classes, drawn uniformly from [min_n_way, n_way]; with ``config.min_k_shot``
(0: off) ``shot`` support examples per class, drawn uniformly from
[min_k_shot, k_shot], the same for every class of the episode; every class
keeps ``n_query`` queries. Way and shot are drawn independently, per episode,
on the device.

Every episode is padded to the largest shape, ``n_way * k_shot`` support and
``n_way * n_query`` query rows, laid out as :mod:`metalearn.data.episodes`
lays out a fixed-shape episode (support row ``i`` is example ``i % k_shot``
of label ``i // k_shot``), and carries an
:class:`~metalearn.types.EpisodeMask`: a support row is real when its label
is below ``way`` and its example index below ``shot``, a query row when its
label is below ``way``. Padded rows are zero images labelled
:data:`metalearn.masking.PAD_LABEL` (-1). The shapes never change, so one
compiled step serves every episode; the losses, metrics, batch statistics
and prototypes count the real rows only (:mod:`metalearn.masking`).

The draw: a full ``n_way``-way ``k_shot``-shot episode from the fixed-shape
sampler (its labels go to the classes in random order and its examples come
in random order), of which the first ``way`` labels and the first ``shot``
support examples of each are kept: a uniform choice of classes and examples.
Simpler than Meta-Dataset's sampler, whose shots differ between the classes
of an episode and follow the class sizes.

Evaluation runs at fixed shapes of its own: ``config.eval_n_way`` and
``config.eval_k_shot`` (0: ``n_way`` and ``k_shot``), with
``config.eval_n_query`` queries per class.
"""

import numbers

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metalearn import masking
from metalearn.data import episodes
from metalearn.types import Array, EpisodeMask, Task

Config = ml_collections.ConfigDict


def train_ways(config: Config) -> tuple[int, int]:
  """(fewest, most) classes of a training episode."""
  return (config.get("min_n_way", 0) or config.n_way), config.n_way


def train_shots(config: Config) -> tuple[int, int]:
  """(fewest, most) support examples per class of a training episode."""
  return (config.get("min_k_shot", 0) or config.k_shot), config.k_shot


def varies(config: Config) -> bool:
  """Whether training episodes vary in way or shot (and so are padded)."""
  (few_ways, ways), (few_shots, shots) = train_ways(config), train_shots(
      config)
  return few_ways < ways or few_shots < shots


def eval_n_way(config: Config) -> int:
  """Classes of a validation or test episode."""
  return config.get("eval_n_way", 0) or config.n_way


def eval_k_shot(config: Config) -> int:
  """Support examples per class of a validation or test episode."""
  return config.get("eval_k_shot", 0) or config.k_shot


def bounds(config: Config) -> dict:
  """The keywords of :func:`sample_tasks` beyond the fixed sampler's."""
  return dict(min_n_way=train_ways(config)[0],
              min_k_shot=train_shots(config)[0])


def pad(tasks: Task, ways: Array, shots: Array, *, k_shot: int) -> Task:
  """Fixed-shape episodes cut down to ``ways`` and ``shots``, padded.

  Args:
    tasks: a batch of fixed-shape episodes from
      :func:`metalearn.data.episodes.sample_tasks` (support row ``i`` has
      label ``i // k_shot``), without a mask.
    ways: int [B], classes to keep per episode (labels ``0..way-1``).
    shots: int [B], support examples to keep per class.
    k_shot: the episodes' support examples per class.

  Returns:
    The same shapes with an ``EpisodeMask``; padded rows are zero images
    labelled ``PAD_LABEL``.
  """
  slot = jnp.arange(tasks.support_y.shape[1]) % k_shot
  support = ((tasks.support_y < ways[:, None])
             & (slot[None, :] < shots[:, None]))
  query = tasks.query_y < ways[:, None]

  def blank(x, real):
    return jnp.where(real.reshape(real.shape + (1,) * (x.ndim - 2)), x, 0)
  return Task(blank(tasks.support_x, support),
              jnp.where(support, tasks.support_y, masking.PAD_LABEL),
              blank(tasks.query_x, query),
              jnp.where(query, tasks.query_y, masking.PAD_LABEL),
              EpisodeMask(support, query))


def _check_bound(name: str, value, low: int, high: int, what: str) -> None:
  if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
      or not low <= value <= high):
    raise ValueError(f"{name}={value!r} is out of range: must be an integer "
                     f"in [{low}, {high}] ({what})")


def sample_tasks(key: Array, images, *, n_way: int, min_n_way: int,
                 k_shot: int, min_k_shot: int, n_query: int, batch_size: int,
                 rotate: bool = False) -> Task:
  """Draws a batch of episodes of any way and shot, padded to one shape.

  Args:
    key: PRNG key; the same key gives the same episodes.
    images: class-major images or ``RaggedClasses``, as
      :func:`metalearn.data.episodes.sample_tasks` takes them.
    n_way: the most classes per episode (the padded shape's).
    min_n_way: the fewest, in [1, n_way].
    k_shot: the most support examples per class.
    min_k_shot: the fewest, in [1, k_shot].
    n_query: query examples per class.
    batch_size: episodes, >= 1.
    rotate: sample from the 4 C classes of 90-degree rotations.

  Returns:
    ``Task`` shaped as the fixed sampler's for ``n_way``, ``k_shot``,
    ``n_query`` (support_x [B, n_way * k_shot, H, W, ch], ...) with
    ``mask`` bool [B, n_way * k_shot] and [B, n_way * n_query].
  """
  _check_bound("min_n_way", min_n_way, 1, n_way, f"n_way={n_way}")
  _check_bound("min_k_shot", min_k_shot, 1, k_shot, f"k_shot={k_shot}")
  task_key, way_key, shot_key = jax.random.split(key, 3)
  tasks = episodes.sample_tasks(task_key, images, n_way=n_way, k_shot=k_shot,
                                n_query=n_query, batch_size=batch_size,
                                rotate=rotate)
  ways = jax.random.randint(way_key, (batch_size,), min_n_way, n_way + 1)
  shots = jax.random.randint(shot_key, (batch_size,), min_k_shot, k_shot + 1)
  return pad(tasks, ways, shots, k_shot=k_shot)


def fixed_tasks(seed_or_key, images, *, num_tasks: int, **sizes) -> Task:
  """A fixed pool of episodes of any way and shot, drawn once.

  Args:
    seed_or_key: int seed or PRNG key; the same value gives the same pool.
    images: as in :func:`sample_tasks`.
    num_tasks: pool size, >= 1.
    **sizes: ``n_way``, ``min_n_way``, ``k_shot``, ``min_k_shot``,
      ``n_query``, ``rotate``, as in :func:`sample_tasks`.
  """
  if isinstance(seed_or_key, numbers.Integral):
    seed_or_key = jax.random.key(int(seed_or_key))
  _check_bound("num_tasks", num_tasks, 1, np.iinfo(np.int32).max, "a count")
  return sample_tasks(seed_or_key, images, batch_size=num_tasks, **sizes)


def episode_sizes(tasks: Task, *, k_shot: int) -> tuple[np.ndarray,
                                                          np.ndarray]:
  """(ways [B], shots [B]) of a batch of padded episodes, on the host."""
  support = np.asarray(tasks.mask.support)
  query = np.asarray(tasks.mask.query)
  n_query = query.shape[1] // (support.shape[1] // k_shot)
  ways = query.sum(axis=1) // n_query
  return ways, support.sum(axis=1) // np.maximum(ways, 1)
