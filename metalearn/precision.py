"""Compute dtype: bfloat16 arithmetic with float32 parameters.

``compute_in(apply_fn, "bfloat16")`` returns an apply function that casts the
parameters and floating inputs to bfloat16 on the way in and the logits back
to float32 on the way out. The meta-parameters, the inner-loop updates'
accumulation into them, the Adam state and the losses stay float32; only the
network's matmuls and convolutions (and their gradients) run in bfloat16.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from metalearn.types import Array

COMPUTE_DTYPES = ("float32", "bfloat16")


def check_compute_dtype(name: str, value: str) -> None:
  """Raises ValueError naming ``name`` unless ``value`` is a known dtype."""
  if value not in COMPUTE_DTYPES:
    raise ValueError(f"{name} must be one of {', '.join(COMPUTE_DTYPES)}; "
                     f"got {value!r}.")


def compute_in(apply_fn: Callable[..., Array],
               dtype: str = "float32") -> Callable[..., Array]:
  """``apply_fn`` computing in ``dtype``, with float32 logits out.

  Args:
    apply_fn: ``apply(params, x[, step][, mask=]) -> logits``.
    dtype: ``float32`` (returns ``apply_fn`` itself) or ``bfloat16``.

  Returns:
    An apply function with the same signature.
  """
  check_compute_dtype("dtype", dtype)
  if dtype == "float32":
    return apply_fn
  low = jnp.dtype(dtype)

  def cast(a):
    return a.astype(low) if jnp.issubdtype(a.dtype, jnp.floating) else a

  def apply(params, x, *step, **mask):
    logits = apply_fn(jax.tree.map(cast, params), cast(x), *step, **mask)
    return logits.astype(jnp.float32)

  return apply
