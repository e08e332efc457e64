"""trainer.run: calls end at marks and phase switches without new programs,
and later phases compile in the background with the same result."""

import threading
import time
import types

import jax
import numpy as np
import optax

import metalearn as ml
from metalearn import programs
from metalearn import schedules
from metalearn import trainer
from tests import helpers


def _plan():
  return schedules.phase_plan(meta_steps=10, steps_per_epoch=5,
                              first_order=False, multi_step_loss=False,
                              msl_epochs=0, inner_steps=2,
                              first_order_epochs=1)


def _run(steps_per_call, marks, built, **options):
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

  chunks, seen = [], []
  result = trainer.run(state, build_step=build_step, plan=_plan(),
                       data_at=lambda step: tasks, key=jax.random.key(2),
                       steps_per_call=steps_per_call, marks=marks,
                       on_chunk=chunks.append,
                       on_mark=lambda step, s, stop: seen.append(step),
                       progress=False, **options)
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


def test_later_phases_compile_in_the_background_to_the_same_run(monkeypatch):
  threads = []
  timed = programs._timed_compile

  def record_thread(lowered):
    threads.append(threading.current_thread().name)
    return timed(lowered)

  monkeypatch.setattr(programs, "_timed_compile", record_thread)
  built = []
  ahead, chunks, _ = _run(4, marks=(3, 7), built=built, compile_ahead=True)
  # Both phases traced at the start, in order, and compiled off the main
  # thread; the second-order phase's first call says it compiled.
  assert built == [(schedules.Phase(True, False), 4),
                   (schedules.Phase(False, False), 4)]
  assert len(threads) == 2 and all(t.startswith("compile-ahead")
                                   for t in threads)
  assert [c.compiled for c in chunks] == [True, False, True, False]
  assert ahead.compile_ahead_seconds >= 0.0 and ahead.compile_seconds > 0
  threads.clear()
  inline, inline_chunks, _ = _run(4, marks=(3, 7), built=[],
                                  compile_ahead=False)
  assert threads == ["MainThread", "MainThread"]
  assert inline.compile_ahead_seconds == 0.0
  jax.tree.map(np.testing.assert_array_equal, ahead.state.meta,
               inline.state.meta)
  np.testing.assert_array_equal(
      np.concatenate([c.output.loss for c in chunks]),
      np.concatenate([c.output.loss for c in inline_chunks]))


def test_a_run_stopped_before_the_switch_leaves_its_compile_unused():
  built = []
  result, chunks, _ = _run(4, marks=(3, 7), built=built, compile_ahead=True,
                           max_seconds=1e-9)
  assert result.stop == trainer.OUT_OF_TIME and len(chunks) == 1
  assert result.compile_ahead_seconds == 0.0 and len(built) == 2


def test_only_the_phases_still_ahead_are_compiled():
  plan = _plan()  # First order before meta-step 5, second order from it.
  first, second = schedules.Phase(True, False), schedules.Phase(False, False)
  assert programs.phases_from(plan, 0) == (first, second)
  assert programs.phases_from(plan, 5) == (second,)
  # One phase left: nothing to compile ahead, so no thread.
  assert programs.start(None, plan, 5, compile_ahead=True).ahead is None
  assert programs.start(None, plan, 0, compile_ahead=False).ahead is None


class _SlowLowered:
  """Stands in for ``jit(...).lower(...)``: its compile takes ``delay``."""

  def __init__(self, phase, delay):
    self.phase, self.delay = phase, delay

  def compile(self):
    time.sleep(self.delay)
    return self.phase


def test_background_compile_time_is_counted_once():
  plan = _plan()
  first, second = programs.phases_from(plan, 0)
  build = lambda phase, count: types.SimpleNamespace(
      lower=lambda *args: _SlowLowered(phase, 0.3))
  run = programs.start(build, plan, 0, compile_ahead=True)
  args = (None, np.zeros(3), None)
  # The first program waits for its own compile; the second then compiles
  # while "training" sleeps, and is ready at the switch.
  program, waited, ahead = programs.get(run, first, 4, *args, None)
  assert program == first and waited >= 0.3 and ahead == 0.0
  training_since = time.perf_counter()
  time.sleep(0.6)
  program, waited, ahead = programs.get(run, second, 4, *args,
                                        training_since)
  assert program == second and waited < 0.1 and 0.2 < ahead < 0.45
  # Used again: nothing to wait for, nothing counted.
  assert programs.get(run, second, 4, *args, training_since)[1:] == (0.0,
                                                                      0.0)
  assert programs.finish(run) is None  # No XLA scratch reported.
