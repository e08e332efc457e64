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
head's ``n_way`` and labels are ``0..n_way-1``. :func:`at_width` evaluates
at more classes than the head has: the prototype head then has that width
(the MAML family starts each task from it, as Proto-MAML does). Padded
tasks (``task.mask``) leave padded support examples out of the prototypes
and hide absent classes (:mod:`metalearn.masking`).
"""

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from metalearn import core
from metalearn import masking
from metalearn import rules
from metalearn.models.conv4 import dense_head
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


def with_prototype_head(params: PyTree, protos: Array, *,
                        any_width: bool = False) -> PyTree:
  """``params`` whose ``'head'`` is the prototype classifier.

  Args:
    params: parameters with ``params['head']`` = ``{'kernel': [F, n_way],
      'bias': [n_way]}``.
    protos: [n_way, F] prototypes ([N, F] for any N with ``any_width``:
      the head becomes [F, N], for :func:`prototype_apply`).
    any_width: allow another number of classes than the head's.

  Returns:
    ``params`` with ``kernel = 2 protos.T`` and ``bias = -||protos||^2``
    (each in the head's dtype); every other entry unchanged.
  """
  head = params["head"]
  kernel = jnp.shape(head["kernel"])
  want = jnp.shape(protos)[::-1]
  if kernel[:1] != want[:1] or (kernel != want and not any_width):
    raise ValueError(f"the head's kernel has shape {kernel}, but the "
                     f"prototypes make {want} ([F, n_way]).")
  return {**params, "head": {**head, **prototype_head(protos, head)}}


@functools.lru_cache(maxsize=None)
def prototype_apply(body: Callable) -> Callable:
  """``apply(params, x, mask=None)``: the body, then the dense
  ``params['head']`` of any width (one function per body, so that jitted
  callers see the same static argument)."""
  def apply(params, x, mask=None):
    return dense_head(params, body(params, x, **masking.model_kwargs(mask)))
  return apply


def head_rates(inner_lrs: PyTree, n: int) -> PyTree:
  """The inner rates of a head of ``n`` classes: per-element head rates
  [steps, ..., width] become their class mean, broadcast to ``n``;
  per-tensor [steps] rates stay."""
  def fit(lr):
    if lr is None or jnp.ndim(lr) == 1:
      return lr
    mean = jnp.mean(lr, axis=-1, keepdims=True)
    return jnp.broadcast_to(mean, (*jnp.shape(lr)[:-1], n))
  head = jax.tree.map(fit, inner_lrs["head"], is_leaf=lambda x: x is None)
  return {**inner_lrs, "head": head}


def _prototypes_of(split: core.BodyHead, params: PyTree, task: Task,
                   classes: int) -> tuple[Array, Array]:
  """(prototypes [classes, F], query features [Q, F]) of one task."""
  support, query = masking.body_features(split.body, params, task)
  labels = masking.real_labels(
      task.support_y, None if task.mask is None else task.mask.support)
  return prototypes(support, labels, classes), query


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
                     query_every_step: bool = True,
                     width: Optional[int] = None, **unused):
  """``run(task) -> (params with the prototype head, StepMetrics)``.

  No inner step: the metrics are the prototype classifier's, repeated over
  the ``[inner_steps]`` axis of ``inner_lrs`` (``[1]`` without
  ``query_every_step``) so that they have the shape of an inner loop's.
  ``width``: the number of classes (default the head's).
  """
  del apply_fn, unused  # No step to take: first_order, remat, ... are moot.
  split = _split(body_head, "ProtoNet")
  _check_objective(objective, "ProtoNet")
  steps = core.validate_inner_lrs(params, inner_lrs)
  repeat = steps if query_every_step else 1
  classes = width or n_way(params)

  def run(task: Task) -> tuple[PyTree, StepMetrics]:
    core.validate_task(task, objective=objective)
    protos, query = _prototypes_of(split, params, task, classes)
    logits = distance_logits(query, protos)
    if task.mask is None:
      metrics = StepMetrics(objective.loss(logits, task.query_y),
                            objective.metric(logits, task.query_y))
    else:
      metrics = masking.scores(
          objective, logits, task.query_y, task.mask.query,
          masking.task_present(task, objective, classes))
    return (with_prototype_head(params, protos, any_width=width is not None),
            jax.tree.map(lambda m: jnp.broadcast_to(m, (repeat,)), metrics))
  return run


PROTONET = rules.InnerUpdate("prototypes", _protonet_runner)
"""ProtoNet as an inner update: no step, the prototype classifier's metrics."""


def _proto_maml_runner(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
                       *, base: rules.InnerUpdate,
                       body_head: Optional[core.BodyHead] = None,
                       objective: Objective = CLASSIFICATION,
                       width: Optional[int] = None, **options):
  """``run(task)``: the head from the task's prototypes, then ``base``.

  When only the head adapts, ``base`` gets the body/head split (the body
  runs once per task); otherwise it adapts through the whole model.
  ``width``: the number of classes (default the head's); another width
  adapts :func:`prototype_apply` with :func:`head_rates`.
  """
  split = _split(body_head, "Proto-MAML")
  _check_objective(objective, "Proto-MAML")
  any_width = width is not None
  if any_width:
    apply_fn, inner_lrs = prototype_apply(split.body), head_rates(inner_lrs,
                                                                  width)
    split = core.BodyHead(split.body, dense_head)
  inner_body_head = split if _adapts_head_only(inner_lrs) else None
  classes = width or n_way(params)

  def run(task: Task):
    protos, _ = _prototypes_of(split, params, task, classes)
    start = with_prototype_head(params, protos, any_width=any_width)
    return base.make(apply_fn, start, inner_lrs, body_head=inner_body_head,
                     objective=objective, **options)(task)
  return run


def prototype_init(base: rules.InnerUpdate,
                   width: Optional[int] = None) -> rules.InnerUpdate:
  """Proto-MAML: ``base`` (SGD, Adam) starting from the prototype head (of
  ``width`` classes; default the head's)."""
  hyper = (("base", base),) + ((("width", width),) if width else ())
  return rules.InnerUpdate(f"prototypes+{base.name}", _proto_maml_runner,
                           hyper)


def at_width(update: rules.InnerUpdate, width: int) -> rules.InnerUpdate:
  """``update`` on tasks of ``width`` classes, another number than the
  head's: ProtoNet and Proto-MAML take their prototypes at that width; any
  other update starts each task from the prototype head of that width
  (Proto-MAML's start, Triantafillou et al. 2020), the body's features of
  the support set deciding the head the learned one cannot be."""
  if update.runner in (_protonet_runner, _proto_maml_runner):
    return update._replace(hyper=update.hyper + (("width", width),))
  return prototype_init(update, width)


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
