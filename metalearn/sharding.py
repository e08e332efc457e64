"""One code path for one or many devices: split the task batch, copy the rest.

Meta-learning is data-parallel over tasks: every task's inner loop is
independent, so the meta-batch is split along its leading ``tasks`` axis and
the parameters, optimizer state and dataset are replicated. XLA (GSPMD) then
runs each device's share of the ``vmap`` over tasks and all-reduces the
meta-gradient, so the step that runs on one device runs unchanged on many::

  mesh = sharding.make_mesh()              # all devices, one 'tasks' axis
  sharding.check_divisible(meta_batch_size, mesh)
  step = make_meta_step(..., task_sharding=sharding.task_sharding(mesh))
  state = sharding.replicate(init_meta_state(...), mesh)
  data = sharding.replicate(data, mesh)
  state, out = step(state, data, key)      # same program for 1 or N devices

With one device the mesh has one entry and the constraint is a no-op.

Several processes (e.g. 2 hosts x 8 GPUs): see :mod:`metalearn.distributed`
and docs/scaling.md. After ``jax.distributed.initialize()``,
``jax.devices()`` lists every device of every process and :func:`make_mesh`
spans them all; each process runs the same jitted step on its own devices'
share of the tasks, sampled inside the step from a replicated dataset, so no
process feeds data to another.
"""

from typing import Optional, Sequence

import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from metalearn.types import PyTree

TASK_AXIS = "tasks"


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh with one ``tasks`` axis over ``devices``.

  Args:
    devices: the devices to split tasks over; defaults to ``jax.devices()``,
      which is every local device on one host and every device of every host
      after ``jax.distributed.initialize()``.

  Returns:
    A ``Mesh`` of shape ``[len(devices)]``. Its axis is ``Auto`` (GSPMD
    propagates the sharding), which ``jax.lax.with_sharding_constraint`` in
    :func:`metalearn.step.make_meta_step` requires: on an ``Explicit`` axis
    (``jax.make_mesh``'s default in new JAX) the constraint is an error.
  """
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("make_mesh needs at least one device.")
  return jax.make_mesh((len(devices),), (TASK_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def task_sharding(mesh: Mesh) -> NamedSharding:
  """Splits the leading (task) axis of every leaf across the mesh."""
  return NamedSharding(mesh, PartitionSpec(TASK_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Copies every array of ``tree`` onto every device of ``mesh``.

  Use it for the meta-state and the dataset. ``None`` leaves (frozen inner
  learning rates) stay ``None``.
  """
  return jax.device_put(tree, replicated(mesh))


def num_devices(mesh_or_count: Mesh | int) -> int:
  """Devices along the ``tasks`` axis of a mesh (or an integer as is)."""
  if isinstance(mesh_or_count, Mesh):
    return mesh_or_count.shape[TASK_AXIS]
  return int(mesh_or_count)


def check_divisible(meta_batch_size: int, mesh_or_count: Mesh | int, *,
                    hint: str = "or pass fewer devices to make_mesh") -> None:
  """Raises unless the meta-batch splits evenly across the devices.

  Args:
    meta_batch_size: tasks per meta-step.
    mesh_or_count: a mesh from :func:`make_mesh` or a device count.
    hint: the other way out, after "change meta_batch_size".

  Raises:
    ValueError: naming ``meta_batch_size`` and the device count when the
      former is not a positive multiple of the latter.
  """
  n = num_devices(mesh_or_count)
  if meta_batch_size < 1 or meta_batch_size % n:
    raise ValueError(
        f"meta_batch_size={meta_batch_size} must be a positive multiple of "
        f"the number of devices ({n}) so every device gets the same number "
        f"of tasks; change meta_batch_size {hint}.")
