"""Sinusoid regression tasks (Finn et al. 2017, section 5.1).

A task is a sine wave ``y = A sin(x - phi)`` with amplitude ``A`` uniform in
[0.1, 5.0] and phase ``phi`` uniform in [0, pi]; its inputs are uniform in
[-5, 5]. The paper states the ranges but not the formula; the sign of the
phase follows the authors' code (``amp * np.sin(x - phase)`` in
``cbfinn/maml``'s ``data_generator.py``); with ``phi`` uniform over an
interval of length pi either sign gives an equally hard family.

The support set holds ``k_shot`` points (K = 5 or 10 in the paper), the query
set ``n_query`` fresh points of the same sine (the paper's code drew K query
points too). Inputs and targets are float32 ``[B, N, 1]``: a regression
:class:`metalearn.Task` for ``metalearn.objectives.REGRESSION``.

Everything is pure and jittable with the sizes and ranges static, so the
sampler can run inside the compiled meta-step, like the Omniglot one
(:mod:`metalearn.data.episodes`). The same key gives the same tasks, and
:func:`task_params` on that key gives their amplitudes and phases.

Registered as the dataset ``sinusoid`` (loss ``mse``, model ``mlp``): fresh
training tasks every meta-step (or a fixed pool of ``config.train_pool``,
seed ``config.seed + 1``), fixed val / test tasks of seeds ``config.seed +
2`` / ``+ 3``.
"""

import functools
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metalearn.data import episodes
from metalearn.data import registry
from metalearn.types import Array, Task

Range = tuple[float, float]
AMPLITUDE: Range = (0.1, 5.0)
PHASE: Range = (0.0, math.pi)
X_RANGE: Range = (-5.0, 5.0)
_MAX_SIZE = np.iinfo(np.int32).max


class Sines(NamedTuple):
  """The true functions of a batch of tasks.

  Attributes:
    amplitude: [B] amplitudes ``A``.
    phase: [B] phases ``phi``; task b is ``y = A[b] sin(x - phi[b])``.
  """
  amplitude: Array
  phase: Array


def _check_size(name: str, value) -> None:
  if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
      or not 1 <= value <= _MAX_SIZE):
    raise ValueError(f"{name}={value!r} is out of range: must be an integer in "
                     f"[1, {_MAX_SIZE}].")


def _check_range(name: str, value) -> Range:
  try:
    low, high = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a pair (low, high) of numbers; got "
                     f"{value!r}.") from None
  if not (math.isfinite(low) and math.isfinite(high) and low <= high):
    raise ValueError(f"{name}={value!r} must be finite with low <= high.")
  return low, high


def curve(amplitude, phase, x):
  """The true regression function ``amplitude * sin(x - phase)``.

  Args:
    amplitude, phase: scalars (one task), or arrays shaped so that they
      broadcast against ``x`` at the same rank (e.g. ``[B, 1, 1]`` against
      ``[B, N, 1]``).
    x: inputs, any shape (e.g. ``jnp.linspace(-5, 5, 200)`` for a plot).

  Returns:
    The targets, ``x``'s shape.
  """
  return amplitude * jnp.sin(x - phase)


@functools.partial(jax.jit, static_argnames=("batch_size", "amplitude",
                                             "phase"))
def _params(key: Array, *, batch_size: int, amplitude: Range,
            phase: Range) -> Sines:
  amp_key, phase_key, _ = jax.random.split(key, 3)
  return Sines(
      jax.random.uniform(amp_key, (batch_size,), jnp.float32, *amplitude),
      jax.random.uniform(phase_key, (batch_size,), jnp.float32, *phase))


def task_params(key: Array, *, batch_size: int,
                amplitude: Range = AMPLITUDE,
                phase: Range = PHASE) -> Sines:
  """The amplitudes and phases of ``sample_tasks(key, batch_size=...)``.

  Args:
    key: the PRNG key given to :func:`sample_tasks`.
    batch_size, amplitude, phase: as given to :func:`sample_tasks`.

  Returns:
    :class:`Sines` with [batch_size] amplitudes and phases (float32).
  """
  _check_size("batch_size", batch_size)
  return _params(key, batch_size=batch_size,
                 amplitude=_check_range("amplitude", amplitude),
                 phase=_check_range("phase", phase))


@functools.partial(jax.jit, static_argnames=(
    "batch_size", "k_shot", "n_query", "amplitude", "phase", "x_range"))
def _sample(key: Array, *, batch_size: int, k_shot: int, n_query: int,
            amplitude: Range, phase: Range, x_range: Range) -> Task:
  sines = _params(key, batch_size=batch_size, amplitude=amplitude,
                  phase=phase)
  x_key = jax.random.split(key, 3)[2]
  x = jax.random.uniform(x_key, (batch_size, k_shot + n_query, 1),
                         jnp.float32, *x_range)
  y = curve(sines.amplitude[:, None, None], sines.phase[:, None, None], x)
  return Task(x[:, :k_shot], y[:, :k_shot], x[:, k_shot:], y[:, k_shot:])


def sample_tasks(key: Array, *, batch_size: int, k_shot: int, n_query: int,
                 amplitude: Range = AMPLITUDE, phase: Range = PHASE,
                 x_range: Range = X_RANGE) -> Task:
  """Draws a batch of sinusoid regression tasks; pure, jitted, sizes static.

  Per task: an amplitude and a phase (:func:`task_params` of the same key),
  then ``k_shot + n_query`` inputs uniform in ``x_range`` (support and query
  are independent draws of the same sine).

  Args:
    key: PRNG key; the same key gives the same tasks.
    batch_size: number of tasks, >= 1.
    k_shot: support points per task (K), >= 1.
    n_query: query points per task, >= 1.
    amplitude: (low, high) of the uniform amplitude.
    phase: (low, high) of the uniform phase, radians.
    x_range: (low, high) of the uniform inputs.

  Returns:
    ``Task`` with support_x, support_y float32 [B, k_shot, 1] and query_x,
    query_y float32 [B, n_query, 1].

  Raises:
    ValueError: naming ``batch_size``, ``k_shot``, ``n_query``,
      ``amplitude``, ``phase`` or ``x_range`` when out of range.
  """
  for name, value in (("batch_size", batch_size), ("k_shot", k_shot),
                      ("n_query", n_query)):
    _check_size(name, value)
  return _sample(key, batch_size=batch_size, k_shot=k_shot, n_query=n_query,
                 amplitude=_check_range("amplitude", amplitude),
                 phase=_check_range("phase", phase),
                 x_range=_check_range("x_range", x_range))


def _key(seed) -> Array:
  if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
    return jax.random.key(int(seed))
  return seed


def fixed_tasks(seed, *, num_tasks: int, k_shot: int, n_query: int,
                amplitude: Range = AMPLITUDE, phase: Range = PHASE,
                x_range: Range = X_RANGE) -> Task:
  """A fixed set of tasks, drawn once (e.g. 600 test tasks).

  Args:
    seed: int seed or PRNG key; the same value gives the same tasks.
    num_tasks: number of tasks, >= 1.
    k_shot, n_query, amplitude, phase, x_range: as in :func:`sample_tasks`.

  Returns:
    ``Task`` with leading axis ``num_tasks``; :func:`fixed_task_params` with
    the same seed gives their true functions.
  """
  _check_size("num_tasks", num_tasks)
  return sample_tasks(_key(seed), batch_size=num_tasks, k_shot=k_shot,
                      n_query=n_query, amplitude=amplitude, phase=phase,
                      x_range=x_range)


def fixed_task_params(seed, *, num_tasks: int, amplitude: Range = AMPLITUDE,
                      phase: Range = PHASE) -> Sines:
  """The :class:`Sines` of ``fixed_tasks(seed, num_tasks=...)``."""
  _check_size("num_tasks", num_tasks)
  return task_params(_key(seed), batch_size=num_tasks, amplitude=amplitude,
                     phase=phase)


def _check(config: ml_collections.ConfigDict) -> None:
  """Sine tasks are regression: loss ``mse`` and the ``mlp`` model."""
  if config.loss != "mse" or config.model != "mlp":
    raise registry.config_error(
        "loss" if config.loss != "mse" else "model",
        config.loss if config.loss != "mse" else config.model,
        "dataset 'sinusoid' is regression: it needs loss 'mse' and model "
        "'mlp'")


def _load(config: ml_collections.ConfigDict) -> registry.DataParts:
  """No stored data: a pool (``config.train_pool > 0``) or ``zeros((0,))``,
  and the fixed val / test tasks with ``config.eval_n_query`` queries."""
  def fixed(seed, num, n_query):
    return fixed_tasks(seed, num_tasks=num, k_shot=config.k_shot,
                       n_query=n_query)
  train = (fixed(config.seed + 1, config.train_pool, config.n_query)
           if config.train_pool else jnp.zeros((0,), jnp.float32))
  val = (fixed(config.seed + 2, config.val_tasks, config.eval_n_query)
         if config.val_tasks else None)
  return registry.DataParts(
      train, val, fixed(config.seed + 3, config.test_tasks,
                        config.eval_n_query))


def _task_fn(config: ml_collections.ConfigDict) -> registry.TaskFn:
  """``(key, pool or unused) -> Task`` batch of ``config.meta_batch_size``."""
  batch_size = config.meta_batch_size
  if config.train_pool:
    return lambda key, pool: episodes.sample_from_pool(key, pool, batch_size)
  sizes = dict(batch_size=batch_size, k_shot=config.k_shot,
               n_query=config.n_query)
  return lambda key, _: sample_tasks(key, **sizes)


DATASET = registry.register(registry.Dataset(
    name="sinusoid", description="sinusoid regression (Finn et al. 2017)",
    objective="mse", input_shape=lambda config: (1,), check=_check,
    load=_load, task_fn=_task_fn))
