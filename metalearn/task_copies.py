"""One copy of the shared parameters per task, summed back by a matmul.

Under ``vmap`` over a task batch, every task's adaptation starts from the
same meta-parameters. Closed over, they stay unbatched, and the
meta-gradient's per-task cotangents meet at the transpose of that
broadcast: a sum over the leading task axis. XLA's CPU backend runs such a
sum at a small fraction of the memory rate (a [32, 3, 3, 64, 64] kernel
gradient: 5.7 ms, against 0.5 ms for the same sum as a matmul with a vector
of ones; docs/benchmarks.md, "The convolution without windows"). With
:func:`tile` the copies are explicit, ``vmap`` maps over them, and their
cotangents are summed by that matmul. Where a model's convolutions are
XLA's, per-task kernels from the first inner step turn them into grouped
convolutions, so the copies are for models whose convolutions are matmuls
or the C++ kernels (:func:`resolve`).
"""

import functools

import jax
import jax.numpy as jnp

from metalearn.types import PyTree

MODES = ("auto", "on", "off")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def tile(params: PyTree, num_tasks: int) -> PyTree:
  """Every leaf [...] -> [num_tasks, ...], the same values; the VJP sums
  the copies' cotangents with a matmul instead of a reduction."""
  return jax.tree.map(
      lambda p: jnp.broadcast_to(p, (num_tasks,) + jnp.shape(p)), params)


def _tile_fwd(params, num_tasks):
  return tile(params, num_tasks), None


def _tile_bwd(num_tasks, _, cotangents):
  return (jax.tree.map(
      lambda g: jnp.einsum("t,t...->...", jnp.ones((num_tasks,), g.dtype), g),
      cotangents),)


tile.defvjp(_tile_fwd, _tile_bwd)


def resolve(mode: str, conv_impl: str) -> bool:
  """Whether a meta-step tiles its parameters: ``on``, ``off``, or ``auto``
  (on a CPU, unless the convolutions are XLA's: ``conv_impl`` resolved by
  :func:`metalearn.models.resolve_conv_impl`)."""
  if mode not in MODES:
    raise ValueError(f"tile_params must be one of {', '.join(MODES)}; got "
                     f"{mode!r}.")
  if mode == "auto":
    return jax.default_backend() == "cpu" and conv_impl != "xla"
  return mode == "on"
