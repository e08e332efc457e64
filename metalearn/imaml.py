"""iMAML's outer rule (Rajeswaran et al. 2019): the implicit meta-gradient.

The inner problem of each task is regularised towards the initialisation,

    phi*(theta) = argmin_phi L_S(phi) + lam/2 ||phi - theta||^2,

and solved approximately by the inner update :func:`proximal_sgd`, steps
``phi <- phi - alpha (grad L_S(phi) + lam (phi - theta))`` with the inner
rates (``None`` leaves stay at ``theta``), in training and at test time
alike. The inner loop is never differentiated (``stop_gradient``).
Instead, at the stationary point ``d phi*/d theta = (I + H/lam)^-1``, with
``H`` the Hessian of the support loss at ``phi``, so the meta-gradient of
``L_Q(phi*(theta))`` is

    v = (I + H/lam)^-1 g,    g = grad L_Q(phi),

solved with ``cg_steps`` steps of conjugate gradients on Hessian-vector
products (the VJP of ``jax.grad``, taken once per task: ``H`` is symmetric,
so ``v^T H = H v``; reverse mode, so models with hand-written VJPs such as
:mod:`metalearn.models.im2col` work): memory does not grow with the inner
steps. For leaves the inner loop leaves alone (rate ``None``) the exact
direction is ``g_F - (H v)_F / lam`` (one more Hessian-vector product).

:data:`IMAML` (``lam = 1``, 5 CG steps) is an
:class:`metalearn.rules.OuterRule` value; :func:`from_config` and
:func:`inner_from_config` read ``config.imaml_lambda`` and
``config.imaml_cg_steps`` (and ``config.imaml_cg_damping``). Its metrics are the query loss and metric after
each inner step, [num_tasks, inner_steps].
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from metalearn import core
from metalearn import rules
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import ApplyFn, Array, PyTree, StepMetrics, Task
from metalearn.types import is_frozen

# outputs(params, x) -> [B, ...]: the model, as rules.Problem.outputs.
OutputsFn = Callable[[PyTree, Array], Array]


def _dot(a: PyTree, b: PyTree) -> Array:
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a),
                                            jax.tree.leaves(b)))


def _safe_div(num: Array, den: Array) -> Array:
  """``num / den``, and 0 where ``den`` is 0 (a solved system)."""
  return jnp.where(den == 0, 0.0, num / jnp.where(den == 0, 1.0, den))


def conjugate_gradient(matvec: Callable[[PyTree], PyTree], b: PyTree,
                       steps: int, min_curvature: float = 0.0) -> PyTree:
  """``steps`` CG iterations on ``matvec(x) = b`` from ``x = 0``, truncated
  where the map is not positive definite.

  iMAML's map ``I + H/lam`` is positive definite only near a minimiser of
  the inner problem. Away from one (few inner steps, or a step size that
  oscillates) ``H`` has eigenvalues below ``-lam``, and plain CG then
  diverges: its iterates grow without bound and point nowhere. As truncated
  Newton methods do, the iterations stop at the first search direction
  ``p`` whose curvature ``p.A p / p.p`` is at most ``min_curvature``; if that
  is the first one, the result is ``b`` itself (``A`` taken as ``I``: the
  first-order direction).

  Args:
    matvec: a symmetric linear map on pytrees shaped like ``b``.
    b: the right-hand side.
    steps: iterations (>= 1); exact after as many as ``b`` has elements,
      in exact arithmetic, for a positive definite map.
    min_curvature: the least curvature along a search direction for CG to
      go on (>= 0).

  Returns:
    ``x`` shaped like ``b``.
  """
  def step(carry, _):
    x, r, p, rr, stopped = carry
    ap = matvec(p)
    pap = _dot(p, ap)
    stopped = stopped | (pap <= min_curvature * _dot(p, p))
    alpha = jnp.where(stopped, 0.0, _safe_div(rr, pap))
    x = jax.tree.map(lambda xi, pi: xi + alpha * pi, x, p)
    r = jax.tree.map(lambda ri, ai: ri - alpha * ai, r, ap)
    rr_new = _dot(r, r)
    beta = _safe_div(rr_new, rr)
    p = jax.tree.map(lambda ri, pi: ri + beta * pi, r, p)
    return (x, r, p, rr_new, stopped), None

  zeros = jax.tree.map(jnp.zeros_like, b)
  start = (zeros, b, b, _dot(b, b), jnp.asarray(False))
  (x, _, _, _, _), _ = jax.lax.scan(step, start, None, length=steps)
  moved = _dot(x, x) > 0
  return jax.tree.map(lambda xi, bi: jnp.where(moved, xi, bi), x, b)


def _rate(lr: Array, p: Array) -> Array:
  """A per-tensor scalar rate as is; a per-element one shaped like p."""
  return lr if jnp.ndim(lr) == 0 else jnp.reshape(lr, jnp.shape(p))


def proximal_adapt(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
                   task: Task, *, lam: float, first_order: bool = False,
                   step_aware: bool = False, remat: bool = False,
                   unroll: int | bool = 1, query_every_step: bool = True,
                   objective: Objective = CLASSIFICATION
                  ) -> tuple[PyTree, StepMetrics]:
  """iMAML's inner loop: SGD on the support loss plus ``lam/2 ||phi -
  params||^2``.

  As :func:`metalearn.core.adapt` (the same arguments, one step per leading
  entry of ``inner_lrs``, ``None`` leaves stay at ``params``), with the
  proximal term's gradient ``lam (phi - params)`` added to each step.

  Returns:
    ``(adapted, StepMetrics)``: query metrics after each inner step,
    [inner_steps] (or [1], the last, without ``query_every_step``).
  """
  steps = core.validate_inner_lrs(params, inner_lrs)
  core.validate_task(task, objective=objective)

  losses = core.task_losses(apply_fn, task, objective=objective,
                            step_aware=step_aware)
  metrics = losses.query_metrics

  def step_fn(phi, xs):
    lrs, step = xs
    grads = jax.grad(losses.support_loss)(phi, step)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    phi = jax.tree.map(
        lambda lr, p, g, t: p if lr is None else
        p - _rate(lr, p) * (g + lam * (p - t)),
        lrs, phi, grads, params, is_leaf=is_frozen)
    return phi, (metrics(phi, step) if query_every_step else None)

  if remat:
    step_fn = jax.checkpoint(step_fn)
  adapted, per_step = jax.lax.scan(
      step_fn, params, (inner_lrs, jnp.arange(steps, dtype=jnp.int32)),
      unroll=unroll)
  if query_every_step:
    return adapted, per_step
  final = metrics(adapted, jnp.int32(steps - 1))
  return adapted, jax.tree.map(lambda m: m[None], final)


def _proximal_runner(apply_fn, params, inner_lrs, *, lam, **options):
  return core.task_runner(apply_fn, params, inner_lrs,
                          adapt_fn=proximal_adapt, lam=lam, **options)


def proximal_sgd(lam: float) -> rules.InnerUpdate:
  """iMAML's inner update: SGD with the inner rates on the support loss
  plus ``lam/2 ||phi - theta||^2`` (:func:`proximal_adapt`)."""
  return rules.InnerUpdate("proximal_sgd", _proximal_runner,
                           (("lam", float(lam)),))


def _masked(inner_lrs: PyTree, tree: PyTree) -> PyTree:
  """``tree`` with zeros on the leaves the inner loop leaves alone."""
  return jax.tree.map(lambda lr, t: jnp.zeros_like(t) if lr is None else t,
                      inner_lrs, tree, is_leaf=is_frozen)


def implicit_gradient(outputs: OutputsFn, phi: PyTree, inner_lrs: PyTree,
                      task: Task, *, lam: float, cg_steps: int,
                      damping: float = 0.0,
                      objective: Objective = CLASSIFICATION) -> PyTree:
  """One task's implicit meta-gradient at the adapted parameters ``phi``.

  Args:
    outputs: ``outputs(params, x[, mask=]) -> [B, ...]``, the model.
    phi: the task's adapted parameters (the inner problem's solution).
    inner_lrs: which leaves the inner loop adapts (``None``: frozen).
    task: the task (support and query sets; a padded one counts its real
      entries only, :mod:`metalearn.masking`).
    lam, cg_steps, damping: as in :func:`imaml`.
    objective: the loss of both loops.

  Returns:
    ``v = (I + H/(lam + damping))^-1 g`` on the adapted leaves and ``g -
    (H v)/(lam + damping)`` on the frozen ones, shaped like ``phi``; ``g`` is
    the query gradient at ``phi`` and ``H`` the support loss's Hessian there.
  """
  phi = jax.lax.stop_gradient(phi)
  losses = core.task_losses(outputs, task, objective=objective,
                            step_aware=False)
  g = jax.grad(lambda p: losses.query_metrics(p, 0).loss)(phi)
  support_grad = jax.grad(lambda p: losses.support_loss(p, 0))
  _, hessian_vjp = jax.vjp(support_grad, phi)

  def hvp(v):  # H v = v^T H: the support loss's Hessian is symmetric.
    return hessian_vjp(v)[0]

  scale = lam + damping

  def matvec(v):  # (I + H/scale) v on the adapted leaves.
    return jax.tree.map(lambda vi, hi: vi + hi / scale, v,
                        _masked(inner_lrs, hvp(v)))

  v = conjugate_gradient(matvec, _masked(inner_lrs, g), cg_steps)
  if all(lr is not None for lr in jax.tree.leaves(inner_lrs,
                                                  is_leaf=is_frozen)):
    return v
  # The frozen leaves F: d phi_A / d theta_F = -(lam I + H_AA)^-1 H_AF.
  return jax.tree.map(lambda lr, vi, gi, hi: gi - hi / scale if lr is None
                      else vi, inner_lrs, v, g, hvp(v), is_leaf=is_frozen)


def _direction(problem: rules.Problem, trainable: PyTree, tasks: Task,
               step_weights, *, lam: float, cg_steps: int, damping: float):
  """Mean implicit meta-gradient over the task batch.

  The tasks adapt with the problem's inner update (the algorithm pairs this
  rule with :func:`proximal_sgd`). Returns ``((loss, StepMetrics [T,
  inner_steps]), direction)``: the query loss after the last inner step
  (task mean) and after each step; ``step_weights`` is ignored.
  """
  del step_weights
  if problem.outputs is None:
    raise ValueError("iMAML needs Problem.outputs (rules.make_problem sets "
                     "it).")
  params, inner_lrs = problem.split(trainable)
  adapted, metrics = problem.adapt_batch(params, inner_lrs, tasks)

  def one(phi_task):
    phi, task = phi_task
    return implicit_gradient(problem.outputs, phi, inner_lrs, task, lam=lam,
                             cg_steps=cg_steps, damping=damping,
                             objective=problem.objective)
  if problem.batching == "map":
    directions = jax.lax.map(one, (adapted, tasks))
  else:
    directions = jax.vmap(one)((adapted, tasks))
  direction = jax.tree.map(lambda d: jnp.mean(d, axis=0), directions)
  return (jnp.mean(metrics.loss[:, -1]), metrics), direction


class ImplicitGradient(NamedTuple):
  """iMAML's ``direction`` with its hyperparameters as data (hashable).

  Attributes:
    lam: the proximal strength (the paper's lambda), > 0.
    cg_steps: conjugate-gradient iterations, >= 1.
    damping: added to ``lam`` in the linear system only, >= 0 (0: exact).
  """
  lam: float
  cg_steps: int
  damping: float = 0.0

  def __call__(self, problem, trainable, tasks, step_weights):
    return _direction(problem, trainable, tasks, step_weights, lam=self.lam,
                      cg_steps=self.cg_steps, damping=self.damping)


# Each hyperparameter of imaml() -> (its config field, what it must be).
_HYPER = {"lam": ("imaml_lambda", "a number > 0"),
          "cg_steps": ("imaml_cg_steps", "an integer >= 1"),
          "damping": ("imaml_cg_damping", "a number >= 0")}


def _valid(name: str, value) -> bool:
  if isinstance(value, bool):
    return False
  if name == "lam":
    return isinstance(value, (int, float)) and value > 0
  if name == "damping":
    return isinstance(value, (int, float)) and value >= 0
  return isinstance(value, int) and value >= 1


def imaml(lam: float = 1.0, cg_steps: int = 5,
          damping: float = 0.0) -> rules.OuterRule:
  """iMAML's outer rule with proximal strength ``lam`` and ``cg_steps``.

  ``damping`` > 0 solves ``(I + H/(lam + damping)) v = g`` instead: the
  Hessian weighs less, and the direction moves towards the query gradient
  (first order) as ``damping`` grows. Rajeswaran et al.'s implementation
  damps so; it helps where the inner problem is far from solved (few steps,
  a small network early in training: docs/benchmarks.md).
  """
  for name, value in (("lam", lam), ("cg_steps", cg_steps),
                      ("damping", damping)):
    if not _valid(name, value):
      raise ValueError(f"{name} must be {_HYPER[name][1]}, got {value!r}.")
  return rules.OuterRule("implicit gradient",
                         ImplicitGradient(float(lam), int(cg_steps),
                                          float(damping)),
                         learns_inner_lrs=False, step_metrics_all_steps=True)


IMAML = imaml()


def from_config(config) -> rules.OuterRule:
  """:func:`imaml` with ``config.imaml_lambda``, ``config.imaml_cg_steps``
  and ``config.imaml_cg_damping``; ValueError naming the field."""
  for name, (field, valid) in _HYPER.items():
    if not _valid(name, config[field]):
      raise ValueError(f"config.{field}={config[field]!r} is invalid: must "
                       f"be {valid}.")
  return imaml(config.imaml_lambda, config.imaml_cg_steps,
               config.imaml_cg_damping)


def inner_from_config(update: rules.InnerUpdate, config) -> rules.InnerUpdate:
  """iMAML's inner update (:func:`proximal_sgd` with
  ``config.imaml_lambda``), in place of the config's ``update``."""
  del update
  from_config(config)  # Checks the fields.
  if config.inner_optimizer != "sgd":
    raise ValueError(f"config.inner_optimizer={config.inner_optimizer!r} is "
                     "invalid: must be 'sgd' for imaml (its inner loop is "
                     "proximal SGD at inner_lr).")
  return proximal_sgd(config.imaml_lambda)


def direction(apply_fn: ApplyFn, params: PyTree, inner_lrs: PyTree,
              tasks: Task, *, lam: float = 1.0, cg_steps: int = 5,
              damping: float = 0.0, objective: Objective = CLASSIFICATION,
              batching: str = "vmap") -> tuple[PyTree, Array, StepMetrics]:
  """iMAML's direction over a task batch, outside a meta-step.

  Args:
    apply_fn: ``apply(params, x) -> outputs``.
    params: the initialisation ``theta``.
    inner_lrs: the inner rates (``[inner_steps]`` per leaf, ``None`` frozen).
    tasks: a task batch with a leading [num_tasks] axis.
    lam, cg_steps, damping: as in :func:`imaml`.
    objective: the loss of both loops and the metric.
    batching: ``vmap`` or ``map`` over the tasks.

  Returns:
    ``(direction shaped like params, loss, StepMetrics [T, inner_steps])``.
  """
  problem = rules.make_problem(apply_fn, lambda p: (p, inner_lrs),
                               inner=proximal_sgd(lam), batching=batching,
                               first_order=True, objective=objective)
  (loss, metrics), d = imaml(lam, cg_steps, damping).direction(
      problem, params, tasks, None)
  return d, loss, metrics
