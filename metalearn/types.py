"""Small shared types: tasks, per-step metrics and meta-parameters."""

from typing import Any, Callable, NamedTuple, Optional

import jax

Array = jax.Array
PyTree = Any
# apply_fn(params, x) -> logits [B, n_way]; with step_aware=True it is called
# as apply_fn(params, x, step) where step is the inner step index (int32).
ApplyFn = Callable[..., Array]


class EpisodeMask(NamedTuple):
  """Which entries of a padded task are real (:mod:`metalearn.masking`).

  Attributes:
    support: bool [S], True for a real support example.
    query: bool [Q], True for a real query example.
  """
  support: Array
  query: Array


class Task(NamedTuple):
  """One few-shot task; a batch of tasks has a leading task axis on each field.

  Attributes:
    support_x: [S, *input_shape] support inputs.
    support_y: [S] integer labels in [0, n_way).
    query_x: [Q, *input_shape] query inputs.
    query_y: [Q] integer labels in [0, n_way).
    mask: ``None`` when every entry is real (a fixed-shape task); an
      :class:`EpisodeMask` for a task padded to a larger shape (an episode
      of any way and shot): padded entries count in no loss, metric, batch
      statistic or prototype, and a class without a real support example
      gets no probability (:mod:`metalearn.masking`).
  """
  support_x: Array
  support_y: Array
  query_x: Array
  query_y: Array
  mask: Optional[EpisodeMask] = None


class StepMetrics(NamedTuple):
  """Query loss and accuracy after every inner step.

  Shapes are [inner_steps] for one task and [num_tasks, inner_steps] for a batch.
  """
  loss: Array
  accuracy: Array


class MetaParams(NamedTuple):
  """Everything the outer loop may learn.

  Attributes:
    params: model parameters (the initialisation that the inner loop adapts).
    inner_lrs: pytree shaped like ``params``; each leaf is ``None`` (frozen in
      the inner loop), ``[inner_steps]`` (one rate per tensor per step) or
      ``[inner_steps, *leaf.shape]`` (one rate per element per step).
  """
  params: PyTree
  inner_lrs: PyTree


def is_frozen(leaf: Any) -> bool:
  """``is_leaf`` for an ``inner_lrs`` tree: a ``None`` leaf is a parameter
  the inner loop never touches, kept as a leaf instead of an empty node."""
  return leaf is None
