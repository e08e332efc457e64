"""Checks of what the inner loop is given, before anything is traced:
inner rates against the parameters they adapt, and tasks' shapes."""

import jax
import jax.numpy as jnp

from metalearn import masking
from metalearn.objectives import CLASSIFICATION, Objective
from metalearn.types import PyTree, Task
from metalearn.types import is_frozen


def validate_inner_lrs(params: PyTree, inner_lrs: PyTree) -> int:
  """Checks ``inner_lrs`` against ``params``; returns inner_steps (>= 1).

  Raises:
    ValueError: naming ``inner_lrs`` when its structure differs from
      ``params``, a leaf has no leading step axis, the step axes disagree, a
      leaf's trailing shape is neither ``()`` nor the parameter's shape, or
      there are zero steps.
  """
  p_leaves, p_def = jax.tree.flatten(params)
  l_leaves, l_def = jax.tree.flatten(inner_lrs, is_leaf=is_frozen)
  if p_def != jax.tree.structure(
      jax.tree.map(lambda _: 0, inner_lrs, is_leaf=is_frozen)):
    raise ValueError(
        "inner_lrs must have the same tree structure as params (None allowed "
        f"for frozen leaves); got {l_def} for params {p_def}.")
  steps = set()
  for path_p, p, lr in zip(jax.tree_util.tree_leaves_with_path(params),
                           p_leaves, l_leaves):
    name = jax.tree_util.keystr(path_p[0])
    if lr is None:
      continue
    shape = jnp.shape(lr)
    if not shape:
      raise ValueError(f"inner_lrs{name} is a scalar; it needs a leading "
                       "[inner_steps] axis (shape [inner_steps] or "
                       "[inner_steps, *param.shape]).")
    if shape[1:] not in ((), tuple(jnp.shape(p))):
      raise ValueError(
          f"inner_lrs{name} has shape {shape}; expected [inner_steps] or "
          f"[inner_steps, {', '.join(map(str, jnp.shape(p)))}].")
    steps.add(shape[0])
  if not steps:
    raise ValueError("inner_lrs: every leaf is None, so nothing adapts.")
  if len(steps) > 1:
    raise ValueError("inner_lrs leaves disagree on the leading inner_steps "
                     f"axis: {sorted(steps)}.")
  (inner_steps,) = steps
  if inner_steps < 1:
    raise ValueError(f"inner_lrs: inner_steps must be >= 1, got {inner_steps}.")
  return inner_steps


def validate_task(task: Task, *, batched: bool = False,
                  objective: Objective = CLASSIFICATION) -> None:
  """Static shape/dtype checks on a task (or a task batch); works under jit.

  Raises:
    ValueError: naming the field when inputs and targets disagree on their
      leading sizes, a classification task's labels are not integers [N]
      (targets of other objectives may have trailing axes), or a padded
      task's mask is not bool with the targets' leading sizes.
  """
  lead = 2 if batched else 1
  masking.check_mask(task, lead)
  for x_name, y_name in (("support_x", "support_y"), ("query_x", "query_y")):
    x, y = getattr(task, x_name), getattr(task, y_name)
    if objective.integer_targets:
      if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise ValueError(f"task.{y_name} must hold integer class labels; "
                         f"got dtype {jnp.result_type(y)}.")
      if jnp.ndim(y) != lead:
        raise ValueError(f"task.{y_name} must have {lead} axis(es) "
                         f"({'[T, N]' if batched else '[N]'}); got shape "
                         f"{jnp.shape(y)}.")
    if jnp.shape(x)[:lead] != jnp.shape(y)[:lead]:
      raise ValueError(
          f"task.{x_name} and task.{y_name} disagree on their leading sizes: "
          f"{jnp.shape(x)[:lead]} vs {jnp.shape(y)[:lead]}.")
