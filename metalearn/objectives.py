"""What the inner and outer loops minimise, and what they report.

An :class:`Objective` is data handed to :func:`metalearn.core.adapt`,
:func:`metalearn.core.meta_loss` and :func:`metalearn.evaluate.evaluate`, so
nothing in the core assumes classification:

* ``CLASSIFICATION`` (the default): softmax cross-entropy on integer labels,
  accuracy as the metric.
* ``REGRESSION``: mean squared error on float targets, no metric.
"""

from typing import Callable, NamedTuple, Optional

import jax.numpy as jnp
import optax

from metalearn.types import Array

LossFn = Callable[[Array, Array], Array]


class Objective(NamedTuple):
  """A loss, an optional metric, and what the targets must be.

  Attributes:
    name: the key used in configs (``config.loss``).
    loss: ``loss(outputs [B, ...], targets [B, ...]) -> scalar`` mean loss;
      used by the inner loop on the support set and the outer loop on the
      query set.
    metric: ``metric(outputs, targets) -> scalar`` (higher is better), or
      ``None`` when the objective has none; then every ``accuracy`` field of
      the metrics is ``None``.
    metric_name: what ``metric`` measures, for reports.
    integer_targets: targets must be integer class labels.
  """
  name: str
  loss: LossFn
  metric: Optional[LossFn]
  metric_name: str
  integer_targets: bool


def cross_entropy(logits: Array, labels: Array) -> Array:
  """Mean softmax cross-entropy. logits [B, n_way], labels [B] -> scalar."""
  return jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: Array, labels: Array) -> Array:
  """Fraction of argmax hits. logits [B, n_way], labels [B] -> scalar."""
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def mean_squared_error(outputs: Array, targets: Array) -> Array:
  """Mean over every element. outputs, targets [B, D] -> scalar."""
  return jnp.mean(jnp.square(outputs - targets))


CLASSIFICATION = Objective("cross_entropy", cross_entropy, accuracy,
                           "accuracy", integer_targets=True)
REGRESSION = Objective("mse", mean_squared_error, None, "",
                       integer_targets=False)
OBJECTIVES = {o.name: o for o in (CLASSIFICATION, REGRESSION)}


def get(name: str) -> Objective:
  """The objective called ``name``; ValueError naming ``loss`` otherwise."""
  if name not in OBJECTIVES:
    raise ValueError(f"loss={name!r} is unknown; valid: "
                     f"{', '.join(OBJECTIVES)}.")
  return OBJECTIVES[name]
