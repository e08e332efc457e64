"""Tiny models and tasks shared by the tests."""

import jax
import jax.numpy as jnp

import metalearn as ml

N_WAY = 3
INPUT_SHAPE = (4,)

# The start of a fake PyTorch peer interpreter, a format string of
# ``python`` and ``log``: it answers the torch check with a version, and
# otherwise appends its arguments to ``log`` as one JSON line.
FAKE_PEER_HEAD = """#!{python}
import json, sys
if sys.argv[1:2] == ["-c"]:
  print("9.9.9+fake")
  sys.exit(0)
with open({log!r}, "a") as f:
  f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def tiny_model():
  return ml.models.mlp(N_WAY, input_shape=INPUT_SHAPE, hidden=(5,))


def tiny_tasks(key, num_tasks=4, shots=2, queries=3, dtype=jnp.float32):
  """Random linearly-structured tasks: [T, N_WAY*shots, 4] inputs."""
  k_means, k_s, k_q = jax.random.split(key, 3)
  means = jax.random.normal(k_means, (num_tasks, N_WAY, *INPUT_SHAPE)) * 2

  def draw(k, per_class):
    labels = jnp.tile(jnp.arange(N_WAY), per_class)
    noise = jax.random.normal(k, (num_tasks, labels.size, *INPUT_SHAPE))
    x = means[:, labels] + noise
    return x.astype(dtype), jnp.broadcast_to(labels, (num_tasks, labels.size))

  sx, sy = draw(k_s, shots)
  qx, qy = draw(k_q, queries)
  return ml.Task(sx, sy.astype(jnp.int32), qx, qy.astype(jnp.int32))


def first_task(tasks):
  return jax.tree.map(lambda x: x[0], tasks)


def to_f64(tree):
  """Casts floating leaves to float64 (call inside jax.enable_x64)."""
  def cast(x):
    if x is None or not jnp.issubdtype(x.dtype, jnp.floating):
      return x
    return x.astype(jnp.float64)
  return jax.tree.map(cast, tree, is_leaf=lambda x: x is None)
