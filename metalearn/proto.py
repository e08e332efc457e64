"""Class prototypes of support embeddings: ProtoNet and Proto-MAML.

A prototype ``c_k`` is the mean of the body's features of the support
examples of class ``k`` (``body(params, support_x)``, [S, F]).

* ProtoNet (Snell et al. 2017) scores a query ``x`` by ``-||f(x) - c_k||^2``
  and has no inner loop: :data:`PROTONET` is an inner update that takes no
  step and reports the prototype classifier's query metrics.
* Proto-MAML (Triantafillou et al. 2020) sets the linear head from the
  prototypes before the inner loop, ``W[:, k] = 2 c_k``, ``b_k = -||c_k||^2``
  (the same softmax as ProtoNet's: the logits differ by ``-||f(x)||^2``,
  one constant per query), then adapts as MAML does.
  :func:`prototype_init` wraps any inner update (SGD, Adam) that way; the
  meta-gradient flows through the prototypes into the body (also under
  ``first_order``, which only stops the inner gradients).

Both read the model's body and head (:class:`metalearn.core.BodyHead`, handed
to the runner as ``body_head``; the head's parameters are ``params['head']``
with ``kernel`` [F, n_way] and ``bias`` [n_way]); the class count is the
head's ``n_way`` and labels are ``0..n_way-1``.
"""

from typing import Optional

import jax
import jax.numpy as jnp

from metalearn import core
from metalearn import rules
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, Array, PyTree, StepMetrics, Task


def prototypes(features: Array, labels: Array, n_way: int) -> Array:
  """Class means of the features. features [S, F], labels [S] -> [n_way, F].

  A class without an example gets a zero prototype.
  """
  onehot = jax.nn.one_hot(labels, n_way, dtype=features.dtype)  # [S, n_way]
  counts = jnp.maximum(jnp.sum(onehot, axis=0), 1)  # [n_way]
  return (onehot.T @ features) / counts[:, None]


def distance_logits(features: Array, protos: Array) -> Array:
  """ProtoNet's logits ``-||f - c_k||^2``. features [B, F], protos [n_way, F]
  -> [B, n_way]."""
  diff = features[:, None, :] - protos[None, :, :]
  return -jnp.sum(jnp.square(diff), axis=-1)


def n_way(params: PyTree) -> int:
  """The head's output width: the number of classes."""
  return int(jnp.shape(params["head"]["bias"])[-1])


def prototype_head(protos: Array, head: PyTree) -> PyTree:
  """The prototype classifier as a dense head of any width.

  Args:
    protos: [n_way, F] prototypes.
    head: the head it replaces, ``{'kernel': [F, *], 'bias': [*]}`` (for
      the dtypes).

  Returns:
    ``{'kernel': 2 protos.T [F, n_way], 'bias': -||protos||^2 [n_way]}``.
  """
  return {"kernel": (2 * protos.T).astype(head["kernel"].dtype),
          "bias": -jnp.sum(jnp.square(protos), axis=-1).astype(
              head["bias"].dtype)}


def with_prototype_head(params: PyTree, protos: Array) -> PyTree:
  """``params`` whose ``'head'`` is the prototype classifier.

  Args:
    params: parameters with ``params['head']`` = ``{'kernel': [F, n_way],
      'bias': [n_way]}``.
    protos: [n_way, F] prototypes.

  Returns:
    ``params`` with ``kernel = 2 protos.T`` and ``bias = -||protos||^2``
    (each in the head's dtype); every other entry unchanged.
  """
  head = params["head"]
  kernel = jnp.shape(head["kernel"])
  if kernel != jnp.shape(protos)[::-1]:
    raise ValueError(f"the head's kernel has shape {kernel}, but the "
                     f"prototypes make {jnp.shape(protos)[::-1]} ([F, n_way]).")
  return {**params, "head": {**head, **prototype_head(protos, head)}}


def _split(body_head: Optional[core.BodyHead], what: str) -> core.BodyHead:
  if body_head is None:
    raise ValueError(
        f"{what} needs the model split into body and head (a model with "
        "`body` and `head`: conv4, resnet12 or mlp, without per-step batch "
        "norm).")
  return body_head


def _check_objective(objective: Objective, what: str) -> None:
  if not objective.integer_targets or objective.metric is None:
    raise ValueError(f"{what} classifies: it needs the cross-entropy "
                     f"objective with integer labels, not {objective.name!r}.")


def _adapts_head_only(inner_lrs: PyTree) -> bool:
  try:
    core.check_head_only(inner_lrs)
  except ValueError:
    return False
  return True


def _protonet_runner(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree, *,
                     body_head: Optional[core.BodyHead] = None,
                     objective: Objective = CLASSIFICATION,
                     query_every_step: bool = True, **unused):
  """``run(task) -> (params with the prototype head, StepMetrics)``.

  No inner step: the metrics are the prototype classifier's, repeated over
  the ``[inner_steps]`` axis of ``inner_lrs`` (``[1]`` without
  ``query_every_step``) so that they have the shape of an inner loop's.
  """
  del apply_fn, unused  # No step to take: first_order, remat, ... are moot.
  split = _split(body_head, "ProtoNet")
  _check_objective(objective, "ProtoNet")
  steps = core.validate_inner_lrs(params, inner_lrs)
  repeat = steps if query_every_step else 1
  classes = n_way(params)

  def run(task: Task) -> tuple[PyTree, StepMetrics]:
    core.validate_task(task, objective=objective)
    protos = prototypes(split.body(params, task.support_x), task.support_y,
                        classes)
    logits = distance_logits(split.body(params, task.query_x), protos)
    metrics = StepMetrics(objective.loss(logits, task.query_y),
                          objective.metric(logits, task.query_y))
    return (with_prototype_head(params, protos),
            jax.tree.map(lambda m: jnp.broadcast_to(m, (repeat,)), metrics))
  return run


PROTONET = rules.InnerUpdate("prototypes", _protonet_runner)
"""ProtoNet as an inner update: no step, the prototype classifier's metrics."""


def _proto_maml_runner(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
                       *, base: rules.InnerUpdate,
                       body_head: Optional[core.BodyHead] = None,
                       objective: Objective = CLASSIFICATION, **options):
  """``run(task)``: the head from the task's prototypes, then ``base``.

  When only the head adapts, ``base`` gets the body/head split (the body
  runs once per task); otherwise it adapts through the whole model.
  """
  split = _split(body_head, "Proto-MAML")
  _check_objective(objective, "Proto-MAML")
  inner_body_head = split if _adapts_head_only(inner_lrs) else None
  classes = n_way(params)

  def run(task: Task):
    protos = prototypes(split.body(params, task.support_x), task.support_y,
                        classes)
    start = with_prototype_head(params, protos)
    return base.make(apply_fn, start, inner_lrs, body_head=inner_body_head,
                     objective=objective, **options)(task)
  return run


def prototype_init(base: rules.InnerUpdate) -> rules.InnerUpdate:
  """Proto-MAML: ``base`` (SGD, Adam) starting from the prototype head."""
  return rules.InnerUpdate(f"prototypes+{base.name}", _proto_maml_runner,
                           (("base", base),))


def protomaml_inner(update: rules.InnerUpdate, config) -> rules.InnerUpdate:
  """Proto-MAML's inner update: the config's ``update``, from the
  prototype head (the algorithm table's hook)."""
  del config
  return prototype_init(update)


def protonet_inner(update: rules.InnerUpdate, config) -> rules.InnerUpdate:
  """ProtoNet's inner update, :data:`PROTONET`, whatever the config's
  ``update`` is (the algorithm table's hook)."""
  del update, config
  return PROTONET
