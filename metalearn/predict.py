"""Adapt a meta-learned model to labelled examples, then classify new ones.

``adapt_and_predict(model, support_x, support_labels, query_x)`` runs the
inner loop on the support set (the run's own inner update and rates, for
``inner_steps`` steps) and returns each query's predicted class name, the
class probabilities and the adapted parameters. ``model`` is a workdir (its
best checkpoint by default), a :class:`metalearn.TrainResult`, or a tuple
``(apply_fn, params, inner_lrs)``.

Labels may be any strings (or numbers): the classes are the sorted distinct
labels, and the probability columns follow that order.

**A support set with another number of classes than the head.** When the
support set has N classes and the model's head has another width (a 10-way
support set on a 5-way model), the head is replaced by the prototype head
of Proto-MAML (Triantafillou et al. 2020): with ``c_k`` the mean of the
body's features of class k's support examples, ``W[:, k] = 2 c_k`` and
``b_k = -||c_k||^2``, so that before any step the softmax is that of
``-||f(x) - c_k||^2`` (nearest class mean in feature space); then the whole
model adapts as usual. This needs the model's ``body`` (features [B, F])
and a dense head ``params['head'] = {'kernel', 'bias'}``: a workdir's
conv-4, ResNet-12 or MLP has both; for a ``TrainResult`` or a tuple pass
``body=``. ``head="prototypes"`` uses it even when the widths agree;
step-aware models (MAML++'s per-step batch norm) have no body, so they need
a support set of the head's width. Per-element inner rates of the head
(Meta-SGD) are averaged over the classes for the new head.

**Batch norm.** metalearn's batch norm is transductive (it normalises with
the statistics of the batch it is given). The inner loop sees the support
set, so it adapts with support statistics. To predict,
``batch_norm="support"`` (the default) runs each query in one batch with the
whole support set and keeps its row: the statistics are the support set's
(plus that one query), and a query's prediction does not depend on which
other queries are asked. ``batch_norm="query"`` runs all queries as one
batch, as :func:`metalearn.evaluate.evaluate` scores query sets (the
numbers in ``eval.json``); it needs a class-balanced query batch of
reasonable size.

Images: uint8 (0..255, divided by 255) or float in [0, 1], [N, H, W, C] or
[N, H, W] for one channel; Omniglot-style runs were trained on ink = 1.
"""

import functools
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from metalearn import build
from metalearn import checkpoints
from metalearn import inner_lrs as inner_lrs_lib
from metalearn import plugins
from metalearn import proto
from metalearn import rules
from metalearn import runs
from metalearn import train_result
from metalearn.objectives import CLASSIFICATION
from metalearn.types import PyTree, Task

BATCH_NORM_MODES = ("support", "query")
HEAD_MODES = ("auto", "learned", "prototypes")


class Adaptable(NamedTuple):
  """What adapting needs of a trained model.

  Attributes:
    apply_fn: ``apply_fn(params, x) -> logits`` (``(params, x, step)`` when
      ``step_aware``).
    params: the meta-learned parameters.
    inner_lrs: the inner rates, leaves ``[steps, ...]`` or None (frozen).
    step_aware: whether ``apply_fn`` takes the inner step.
    body: ``body(params, x) -> features [B, F]``, or None.
    inner: the inner update (SGD, or the run's Adam).
    inner_steps: the default number of inner steps (the run's test steps).
    input_shape: one input's shape, when known.
  """
  apply_fn: Callable[..., Any]
  params: PyTree
  inner_lrs: PyTree
  step_aware: bool
  body: Optional[Callable[..., Any]]
  inner: rules.InnerUpdate
  inner_steps: int
  input_shape: Optional[tuple[int, ...]]


class Prediction(NamedTuple):
  """What :func:`adapt_and_predict` returns.

  Attributes:
    labels: [Q] the predicted class name of each query.
    probabilities: float32 [Q, N], columns in ``class_names`` order.
    class_names: [N] the support set's classes, sorted.
    params: the adapted parameters (their head has N outputs).
    head: ``"learned"`` (the meta-learned head) or ``"prototypes"``.
  """
  labels: list
  probabilities: np.ndarray
  class_names: list
  params: PyTree
  head: str


def from_workdir(workdir: str | os.PathLike, which: str = "best"
                ) -> Adaptable:
  """A run's model and its ``best`` (by validation; else the latest) or
  ``latest`` meta-parameters, without loading its dataset."""
  if which not in ("best", "latest"):
    raise ValueError(f"which must be 'best' or 'latest'; got {which!r}.")
  if not (Path(workdir) / "config.json").is_file():
    raise ValueError(f"workdir={str(workdir)!r} holds no config.json: it is "
                     "not a training run's directory.")
  config = runs.read_config(workdir)
  plugins.load(config.get("plugins", ()))
  exp = build.Experiment(build.build_model(config),
                         build.build_optimizer(config), None, None, None,
                         build.build_plan(config))
  template = build.initial_state(config, exp)
  ckpt = checkpoints.Checkpointer(workdir)
  state = ckpt.restore_best(template) if which == "best" else None
  if state is None:
    if ckpt.latest_step() is None:
      raise ValueError(f"workdir={str(workdir)!r} holds no checkpoint yet.")
    state = ckpt.restore_latest(template)
  return Adaptable(exp.model.apply, state.meta.params, state.meta.inner_lrs,
                   exp.model.step_aware, exp.model.body,
                   build.inner_update(config), build.eval_inner_steps(config),
                   build.input_shape(config))


def as_adaptable(model, *, which: str = "best", body=None) -> Adaptable:
  """A workdir path, a ``TrainResult``, a tuple ``(apply_fn, params,
  inner_lrs)`` or an :class:`Adaptable` -> :class:`Adaptable`."""
  if isinstance(model, Adaptable):
    return model if body is None else model._replace(body=body)
  if isinstance(model, (str, os.PathLike)):
    found = from_workdir(model, which)
    return found if body is None else found._replace(body=body)
  if isinstance(model, train_result.TrainResult):
    config = model.maml.config
    return Adaptable(model.apply_fn, model.params, model.inner_lrs,
                     model.step_aware, body, build.inner_update(config),
                     build.eval_inner_steps(config), None)
  if isinstance(model, tuple) and len(model) == 3:
    apply_fn, params, lrs = model
    steps = {int(jnp.shape(l)[0]) for l in jax.tree.leaves(lrs)}
    return Adaptable(apply_fn, params, lrs, False, body, rules.sgd(),
                     max(steps or {1}), None)
  raise ValueError("model must be a workdir, a metalearn.TrainResult or a "
                   f"tuple (apply_fn, params, inner_lrs); got "
                   f"{type(model).__name__}.")


def as_images(x, what: str, input_shape: Optional[tuple] = None
             ) -> jax.Array:
  """uint8 (divided by 255) or float images -> float32 [N, H, W, C]."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    x = x.astype(np.float32) / np.float32(255)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"{what} must be uint8 or float images [N, H, W(, C)]; "
                     f"got {x.dtype} {x.shape}.")
  if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
    raise ValueError(f"{what} has images of shape {x.shape[1:]}; the model "
                     f"takes {tuple(input_shape)}.")
  return jnp.asarray(x, jnp.float32)


def prototype_head(body, params: PyTree, support_x, support_y, n: int
                  ) -> PyTree:
  """``params`` with the head ``W[:, k] = 2 c_k``, ``b_k = -||c_k||^2``,
  ``c_k`` the mean body feature of class k. support_y [S] in [0, n)."""
  features = body(params, support_x).astype(jnp.float32)  # [S, F]
  protos = proto.prototypes(features, support_y, n)
  return {**params, "head": proto.prototype_head(protos, params["head"])}


@functools.partial(jax.jit, static_argnames=("apply_fn", "inner",
                                             "step_aware"))
def _adapt(apply_fn, params, inner_lrs, support_x, support_y, *, inner,
           step_aware):
  run = inner.make(apply_fn, params, inner_lrs, first_order=True,
                   step_aware=step_aware, objective=CLASSIFICATION,
                   query_every_step=False)
  return run(Task(support_x, support_y, support_x, support_y))[0]


@functools.partial(jax.jit, static_argnames=("apply_fn", "step_aware",
                                             "batch_norm"))
def _probabilities(apply_fn, params, support_x, query_x, step, *,
                   step_aware, batch_norm):
  def call(x):
    return apply_fn(params, x, step) if step_aware else apply_fn(params, x)
  if batch_norm == "query":
    logits = call(query_x)
  else:
    logits = jax.lax.map(
        lambda q: call(jnp.concatenate([support_x, q[None]]))[-1], query_x,
        batch_size=16)
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def adapt_and_predict(model, support_x, support_labels, query_x, *,
                      inner_steps: Optional[int] = None, head: str = "auto",
                      batch_norm: str = "support", which: str = "best",
                      body: Optional[Callable] = None) -> Prediction:
  """Adapts to the labelled support set, then classifies the queries.

  Args:
    model: a workdir (``which`` checkpoint), a :class:`metalearn.TrainResult`,
      a tuple ``(apply_fn, params, inner_lrs)`` or an :class:`Adaptable`.
    support_x: [S, H, W(, C)] labelled images (uint8 or float in [0, 1]).
    support_labels: [S] their labels, any strings or numbers; at least 2
      classes.
    query_x: [Q, H, W(, C)] images to classify.
    inner_steps: inner steps, >= 0 (0: no adaptation); default the run's
      test steps (``eval_inner_steps``). Rates beyond the trained steps
      repeat the last step's.
    head: ``"auto"`` (the meta-learned head when its width is the number of
      support classes, else the prototype head), ``"learned"`` or
      ``"prototypes"``; see the module docstring.
    batch_norm: ``"support"`` or ``"query"``; see the module docstring.
    which: ``"best"`` or ``"latest"`` checkpoint of a workdir.
    body: ``body(params, x) -> features`` for a prototype head when
      ``model`` is not a workdir.

  Returns:
    A :class:`Prediction`.

  Raises:
    ValueError: naming the argument.
  """
  found = as_adaptable(model, which=which, body=body)
  if head not in HEAD_MODES or batch_norm not in BATCH_NORM_MODES:
    raise ValueError(f"head must be one of {HEAD_MODES} and batch_norm one of "
                     f"{BATCH_NORM_MODES}; got {head!r}, {batch_norm!r}.")
  steps = found.inner_steps if inner_steps is None else inner_steps
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
    raise ValueError(f"inner_steps must be an integer >= 0; got {steps!r}.")
  support_x = as_images(support_x, "support_x", found.input_shape)
  query_x = as_images(query_x, "query_x", found.input_shape)
  labels = np.asarray(support_labels)
  if labels.shape != (support_x.shape[0],):
    raise ValueError(f"support_labels must be one label per support image, "
                     f"shape [{support_x.shape[0]}]; got {labels.shape}.")
  names, y = np.unique(labels, return_inverse=True)
  if len(names) < 2:
    raise ValueError("support_labels must name at least 2 classes.")
  y = jnp.asarray(y.reshape(-1), jnp.int32)
  n = len(names)
  args = (found.params, support_x, 0) if found.step_aware else (
      found.params, support_x)
  width = jax.eval_shape(found.apply_fn, *args).shape[-1]
  used = head if head != "auto" else ("learned" if width == n
                                      else "prototypes")
  params, lrs, apply_fn = found.params, found.inner_lrs, found.apply_fn
  if used == "learned" and width != n:
    raise ValueError(f"head='learned': the model's head has {width} outputs "
                     f"but the support set has {n} classes.")
  if used == "prototypes":
    if found.body is None or not isinstance(params, dict) or set(
        params.get("head", {})) != {"kernel", "bias"}:
      raise ValueError(
          f"the support set has {n} classes and the model's head {width}: "
          "a prototype head needs the model's body (pass body=..., or a "
          "workdir) and a dense params['head'] (kernel, bias); step-aware "
          "models have no body.")
    params = prototype_head(found.body, params, support_x, y, n)
    lrs = proto.head_rates(lrs, n)
    apply_fn = proto.prototype_apply(found.body)
  if steps:
    params = _adapt(apply_fn, params,
                    inner_lrs_lib.extend_inner_lrs(lrs, steps), support_x, y,
                    inner=found.inner, step_aware=found.step_aware)
  probabilities = np.asarray(_probabilities(
      apply_fn, params, support_x, query_x, jnp.int32(max(steps - 1, 0)),
      step_aware=found.step_aware, batch_norm=batch_norm))
  return Prediction([names[i].item() for i in probabilities.argmax(-1)],
                    probabilities, [v.item() for v in names], params, used)
