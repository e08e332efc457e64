"""Inner learning rates: fixed ones to start from, cut or extended.

An ``inner_lrs`` pytree is shaped like the parameters; each leaf is ``None``
(not adapted), ``[inner_steps]`` (one rate per tensor per step: MAML,
MAML++'s LSLR) or ``[inner_steps, *leaf.shape]`` (per element: Meta-SGD).
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from metalearn.types import PyTree
from metalearn.types import is_frozen


def fixed_inner_lrs(params: PyTree,
                    lr: float,
                    inner_steps: int,
                    *,
                    per_element: bool = False,
                    frozen: Optional[Sequence[str]] = None) -> PyTree:
  """Inner learning rates shaped like ``params``, all equal to ``lr``.

  Args:
    params: the model parameters.
    lr: the inner learning rate (MAML's alpha); must be > 0.
    inner_steps: number of inner steps; must be >= 1.
    per_element: ``[inner_steps, *leaf.shape]`` leaves (Meta-SGD) instead of
      ``[inner_steps]`` (one rate per tensor per step, MAML++'s LSLR).
    frozen: path substrings (``jax.tree_util.keystr`` of the leaf) whose leaves
      get ``None``: not adapted in the inner loop (e.g. ANIL's body).

  Returns:
    The ``inner_lrs`` pytree, float32.
  """
  if inner_steps < 1:
    raise ValueError(f"inner_steps must be >= 1, got {inner_steps}.")
  if not lr > 0:
    raise ValueError(f"lr (inner learning rate) must be > 0, got {lr}.")
  frozen = tuple(frozen or ())

  def make(path, p):
    if any(f in jax.tree_util.keystr(path) for f in frozen):
      return None
    shape = (inner_steps, *jnp.shape(p)) if per_element else (inner_steps,)
    return jnp.full(shape, lr, jnp.float32)

  return jax.tree_util.tree_map_with_path(make, params)


def extend_inner_lrs(inner_lrs: PyTree, inner_steps: int) -> PyTree:
  """Cuts or extends (repeating the last step's rates) to ``inner_steps``.

  Lets evaluation run more inner steps than training (MAML: 1 step to train,
  3 to test) with the rates it learned or was given.
  """
  if inner_steps < 1:
    raise ValueError(f"inner_steps must be >= 1, got {inner_steps}.")

  def fit(lr):
    if lr is None:
      return None
    n = lr.shape[0]
    if inner_steps <= n:
      return lr[:inner_steps]
    tail = jnp.repeat(lr[-1:], inner_steps - n, axis=0)
    return jnp.concatenate([lr, tail], axis=0)

  return jax.tree.map(fit, inner_lrs, is_leaf=is_frozen)


def outside_head(params: PyTree) -> tuple[str, ...]:
  """``frozen`` path substrings of every top-level entry but ``'head'``:
  a head-only inner loop (ANIL)."""
  return tuple(f"['{k}']" for k in params if k != "head")
