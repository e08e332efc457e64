"""What :func:`metalearn.train_maml` returns: the trained model, what
meta-training learned beyond it, and what the run cost."""

from typing import Any, NamedTuple, Optional

import numpy as np

from metalearn import step as step_lib
from metalearn.types import ApplyFn, PyTree


class TrainStats(NamedTuple):
  """Cost of a run; programs are compiled ahead of time, so apart.

  Attributes:
    compile_seconds: waiting for the meta-step programs to compile (one
      per phase).
    train_seconds: the meta-steps themselves.
    meta_steps: meta-steps taken.
    tasks: tasks adapted in all (sum of the meta-batch sizes).
    tasks_per_second: ``tasks / train_seconds``.
    xla_temp_bytes: XLA's scratch memory for one meta-step (the largest
      program's; ``None`` where the backend does not report it).
    compile_ahead_seconds: compiling later phases' programs in the
      background while training ran (not in ``compile_seconds``).
  """
  compile_seconds: float
  train_seconds: float
  meta_steps: int
  tasks: int
  tasks_per_second: float
  xla_temp_bytes: Optional[int]
  compile_ahead_seconds: float = 0.0


class TrainedModel(NamedTuple):
  """The meta-learned initialisation with its model, ready to call.

  Attributes:
    apply_fn: the model's ``apply(params, x[, step])``, computing in
      ``compute_dtype``.
    params: the meta-learned initial parameters.
    step_aware: whether ``apply_fn`` takes the inner step (per-step BN).
  """
  apply_fn: ApplyFn
  params: PyTree
  step_aware: bool

  def __call__(self, x, step: int = 0):
    """Outputs of the initialisation for inputs ``x`` [B, ...]."""
    if self.step_aware:
      return self.apply_fn(self.params, x, step)
    return self.apply_fn(self.params, x)


class MetaLearner(NamedTuple):
  """What meta-training learned beyond the initialisation, and its record.

  Attributes:
    state: the final :class:`metalearn.MetaState` (step, meta-parameters
      with the inner rates, outer optimizer state).
    inner_lrs: inner learning rates, leaves ``[inner_steps]`` (learned with
      ``plus_plus``, else the fixed ``inner_lr``).
    step_losses: [meta_steps, inner_steps] with the multi-step loss: the
      query loss after each inner step, mean over the step's tasks, while
      the multi-step loss weighs them; after that only the last step is
      computed and the earlier columns are NaN. [meta_steps, 1] without it.
    stats: :class:`TrainStats`.
    config: the experiment description the keywords made (the same fields
      as a config of ``experiments/configs/``).
  """
  state: step_lib.MetaState
  inner_lrs: PyTree
  step_losses: np.ndarray
  stats: TrainStats
  config: Any


class TrainResult(NamedTuple):
  """What :func:`train_maml` returns: ``model, maml, losses = result``.

  Attributes:
    model: the :class:`TrainedModel` (callable on inputs).
    maml: the :class:`MetaLearner` (state, inner rates, record).
    losses: [meta_steps] the meta-loss of every meta-step (the weighted
      multi-step loss while it is on).

  ``params``, ``inner_lrs``, ``state``, ``step_losses``, ``apply_fn``,
  ``step_aware`` and ``stats`` name the parts directly.
  """
  model: TrainedModel
  maml: MetaLearner
  losses: np.ndarray

  params = property(lambda self: self.model.params)
  apply_fn = property(lambda self: self.model.apply_fn)
  step_aware = property(lambda self: self.model.step_aware)
  state = property(lambda self: self.maml.state)
  inner_lrs = property(lambda self: self.maml.inner_lrs)
  step_losses = property(lambda self: self.maml.step_losses)
  stats = property(lambda self: self.maml.stats)
