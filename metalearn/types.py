"""Small shared types: tasks, per-step metrics and meta-parameters."""

from typing import Any, Callable, NamedTuple

import jax

Array = jax.Array
PyTree = Any
# apply_fn(params, x) -> logits [B, n_way]; with step_aware=True it is called
# as apply_fn(params, x, step) where step is the inner step index (int32).
ApplyFn = Callable[..., Array]


class Task(NamedTuple):
  """One few-shot task; a batch of tasks has a leading task axis on each field.

  Attributes:
    support_x: [S, *input_shape] support inputs.
    support_y: [S] integer labels in [0, n_way).
    query_x: [Q, *input_shape] query inputs.
    query_y: [Q] integer labels in [0, n_way).
  """
  support_x: Array
  support_y: Array
  query_x: Array
  query_y: Array


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
