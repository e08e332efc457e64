"""Several processes, one program: start-up, the writer, the global batch.

A multi-process run starts the same command once per host (or per GPU); each
process calls :func:`initialize` before any other JAX call, after which
``jax.devices()`` lists every device of every process. The training step is
then one global program over a mesh of all of them
(:func:`training_mesh`): every process holds a full copy of the parameters,
optimizer state and dataset (replicated), and computes only its devices'
share of the meta-batch; XLA all-reduces the meta-gradient, so gradients are
averaged over the global task batch.

Tasks are drawn by their global index (:func:`tasks_by_index`): task ``i``
of meta-step ``s`` is sampled from ``fold_in(fold_in(key, s), i)``, so no
task is drawn twice within a step, a device draws only its own tasks, and
one process with 4 devices draws exactly the tasks of 2 processes with 2
devices each (or of one device alone).

Only process 0 writes metrics, reports and ``eval.json``
(:func:`is_writer`); every process calls the orbax checkpoint saves and
restores, which coordinate among themselves, so the workdir must be on a
file system that every process sees.
"""

import itertools
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding

from metalearn import sharding
from metalearn.types import Array, PyTree, Task

# Environment variables through which a launcher reports its process count.
LAUNCHER_COUNTS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def _launched_processes() -> int:
  """Processes started by SLURM (``srun``) or Open MPI (``mpirun``), else 1."""
  for name in LAUNCHER_COUNTS:
    value = os.environ.get(name, "")
    if value.isdigit():
      return int(value)
  return 1


def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> bool:
  """Starts ``jax.distributed`` when the run has several processes.

  Call it before any other JAX call. It starts when an argument is given,
  when ``$JAX_COORDINATOR_ADDRESS`` is set, or when SLURM or Open MPI
  launched more than one process; arguments left ``None`` are then filled
  in by JAX's own detection (SLURM, Open MPI, Cloud TPU, ...). With one
  process it does nothing.

  Args:
    coordinator_address: ``host:port`` of process 0, reachable by all.
    num_processes: processes in the run, >= 1.
    process_id: this process's index in ``[0, num_processes)``.

  Returns:
    Whether ``jax.distributed.initialize`` was called.

  Raises:
    ValueError: naming the argument, for an out-of-range value.
  """
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"num_processes={num_processes} is invalid: must be an "
                     "integer >= 1.")
  if process_id is not None and (process_id < 0 or (
      num_processes is not None and process_id >= num_processes)):
    raise ValueError(f"process_id={process_id} is invalid: must be in "
                     f"[0, num_processes={num_processes}).")
  if num_processes == 1:
    return False
  asked = (coordinator_address or process_id is not None
           or os.environ.get("JAX_COORDINATOR_ADDRESS"))
  if num_processes is None and not asked and _launched_processes() == 1:
    return False
  jax.distributed.initialize(coordinator_address, num_processes, process_id)
  return True


def is_writer() -> bool:
  """True in process 0, the one that writes metrics, reports and plots."""
  return jax.process_index() == 0


def training_mesh(devices: int, meta_batch_size: int, *,
                  field: str = "devices") -> Mesh:
  """The ``tasks`` mesh a run splits its meta-batch over.

  Args:
    devices: 0: every device (every local one on one process, every device
      of every process after :func:`initialize`); N > 0: the first N local
      devices (one process only).
    meta_batch_size: tasks per meta-step; must be a multiple of the device
      count (no silent fallback to fewer devices).
    field: how errors name ``devices`` (``config.devices`` for a config).

  Returns:
    A 1-D mesh from :func:`metalearn.sharding.make_mesh`.

  Raises:
    ValueError: naming ``field`` when ``devices`` is out of range, and
      naming ``meta_batch_size`` and the device count when it does not
      divide.
  """
  local = jax.local_device_count()
  if isinstance(devices, bool) or not isinstance(devices, int) or not (
      0 <= devices <= local):
    raise ValueError(f"{field}={devices!r} is invalid: must be an integer in "
                     f"[0, {local}] (0: all devices; this process has "
                     f"{local}).")
  if devices and jax.process_count() > 1:
    raise ValueError(f"{field}={devices} is invalid under "
                     f"{jax.process_count()} processes: must be 0 (every "
                     "device of every process).")
  chosen = jax.devices() if devices == 0 else jax.local_devices()[:devices]
  sharding.check_divisible(meta_batch_size, len(chosen),
                           hint=f"or set {field} to a divisor of it")
  return sharding.make_mesh(chosen)


def config_mesh(config) -> Mesh:
  """:func:`training_mesh` of a config (``devices``, ``meta_batch_size``).

  Raises:
    ValueError: as :func:`training_mesh`, naming ``config.devices``; and
      for ``config.max_train_seconds`` > 0 under several processes, whose
      clocks would stop them at different meta-steps.
  """
  if jax.process_count() > 1 and config.max_train_seconds:
    raise ValueError(
        f"config.max_train_seconds={config.max_train_seconds} is invalid "
        f"under {jax.process_count()} processes: must be 0 (processes would "
        "stop at different meta-steps); limit meta_steps instead.")
  return training_mesh(config.devices, config.meta_batch_size,
                       field="config.devices")


_SYNCS = itertools.count()


def synchronize(mesh: Mesh, timeout_s: int = 1800) -> None:
  """Lines the processes up, then runs one all-reduce over ``mesh``.

  CPU collectives (gloo) give the processes 30 s to meet at their first
  collective over a set of devices, and one process can take longer than
  that to compile or load. So every process first waits at a barrier of the
  coordination service (up to ``timeout_s``), then a tiny all-reduce sets
  the collectives up while the processes are in step; later ones wait as
  long as needed. Does nothing on one process.
  """
  if jax.process_count() == 1:
    return
  # pylint: disable-next=g-import-not-at-top
  from jax._src import distributed as jax_distributed  # no public barrier.
  jax_distributed.global_state.client.wait_at_barrier(
      f"metalearn_synchronize_{next(_SYNCS)}", timeout_s * 1000)
  ones = jax.device_put(np.ones(mesh.devices.size, np.float32),
                        sharding.task_sharding(mesh))
  total = jax.jit(jnp.sum, out_shardings=sharding.replicated(mesh))(ones)
  assert int(total) == mesh.devices.size


def tasks_by_index(sample: Callable[[Array, Any], Task], batch_size: int,
                   task_sharding: Optional[NamedSharding] = None
                  ) -> Callable[[Array, Any], Task]:
  """``task_fn(key, data)`` whose task ``i`` is ``sample(fold_in(key, i))``.

  Args:
    sample: ``sample(key, data) -> Task`` batch of one task (leading axis 1),
      e.g. :func:`metalearn.data.episodes.sample_tasks` with
      ``batch_size=1``.
    batch_size: tasks in the global batch.
    task_sharding: the split of the task axis; the task indices are
      constrained to it, so each device samples only its own tasks.

  Returns:
    ``task_fn(key, data) -> Task`` with leading axis ``batch_size``; the
    same tasks whatever the sharding.
  """
  def task_fn(key: Array, data) -> Task:
    index = jnp.arange(batch_size, dtype=jnp.uint32)
    if task_sharding is not None:
      index = jax.lax.with_sharding_constraint(index, task_sharding)

    def one(i):
      return jax.tree.map(lambda x: x[0],
                          sample(jax.random.fold_in(key, i), data))
    return jax.vmap(one)(index)
  return task_fn


def global_batch(batch: Task, mesh: Mesh) -> Task:
  """A host batch (the same full batch in every process) split over ``mesh``.

  Each device takes its rows of the task axis; nothing crosses processes.
  """
  target = sharding.task_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, target, lambda i: x[i])
  return jax.tree.map(put, batch)


def local_copy(tree: PyTree) -> PyTree:
  """This process's copy of replicated arrays, on its first device.

  Evaluation runs on it: every process evaluates the same state locally.
  """
  def local(x):
    if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
      return x.addressable_data(0)
    return x
  return jax.tree.map(local, tree)
