"""trainer.run: calls end at marks and phase switches without new programs."""

import jax
import numpy as np
import optax

import metalearn as ml
from metalearn import schedules
from metalearn import trainer
from tests import helpers


def _run(steps_per_call, marks, built):
  model = helpers.tiny_model()
  params = model.init(jax.random.key(0))
  opt = optax.adam(1e-2)
  state = ml.init_meta_state(params, ml.fixed_inner_lrs(params, 0.4, 2), opt,
                             learn_inner_lrs=False)
  tasks = helpers.tiny_tasks(jax.random.key(1), num_tasks=8)
  task_fn = lambda key, data: jax.tree.map(
      lambda x: x[jax.random.choice(key, 8, (4,), replace=False)], data)

  def build_step(phase, count):
    built.append((phase, count))
    return ml.make_meta_step(model.apply, opt, task_fn, None,
                             first_order=phase.first_order,
                             steps_per_call=count, donate=False)

  plan = schedules.phase_plan(meta_steps=10, steps_per_epoch=5,
                              first_order=False, multi_step_loss=False,
                              msl_epochs=0, inner_steps=2,
                              first_order_epochs=1)
  chunks, seen = [], []
  result = trainer.run(state, build_step=build_step, plan=plan,
                       data_at=lambda step: tasks, key=jax.random.key(2),
                       steps_per_call=steps_per_call, marks=marks,
                       on_chunk=chunks.append,
                       on_mark=lambda step, s, stop: seen.append(step),
                       progress=False)
  return result, chunks, seen


def test_one_program_per_phase_whatever_the_call_lengths():
  # Calls: 0-3 (mark), 3-5 (switch to second order), 5-7 (mark), 7-10.
  built = []
  result, chunks, seen = _run(4, marks=(3, 7), built=built)
  assert [(c.start, c.end) for c in chunks] == [(0, 3), (3, 5), (5, 7),
                                                (7, 10)]
  assert [c.output.loss.shape for c in chunks] == [(3,), (2,), (2,), (3,)]
  assert built == [(schedules.Phase(True, False), 4),
                   (schedules.Phase(False, False), 4)]
  assert seen == [3, 5, 7, 10] and int(result.state.step) == 10
  # The same meta-steps as one step per call.
  single, single_chunks, _ = _run(1, marks=(3, 7), built=[])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               result.state.meta, single.state.meta)
  np.testing.assert_allclose(
      np.concatenate([c.output.loss for c in chunks]),
      np.concatenate([c.output.loss for c in single_chunks]), rtol=1e-5)
