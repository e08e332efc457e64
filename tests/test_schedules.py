"""The multi-step-loss schedule and the phase plan of a training run."""

import functools

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

import metalearn as ml
from metalearn import schedules
from metalearn.schedules import Phase


class StepWeightsTest(parameterized.TestCase):

  def test_last_step_weights_are_one_hot(self):
    np.testing.assert_array_equal(schedules.last_step_weights(4),
                                  [0, 0, 0, 1])
    np.testing.assert_array_equal(schedules.last_step_weights(1), [1])
    with self.assertRaisesRegex(ValueError, "inner_steps"):
      schedules.last_step_weights(0)

  @parameterized.parameters((2, 1), (3, 4), (5, 10))
  def test_msl_weights_sum_to_one_start_uniform_end_one_hot(
      self, inner_steps, msl_epochs):
    epochs = np.linspace(0, msl_epochs + 2, 4 * (msl_epochs + 2) + 1)
    table = np.stack([np.asarray(schedules.msl_weights(
        inner_steps, e, msl_epochs)) for e in epochs])
    chex.assert_shape(table, (epochs.size, inner_steps))
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-6)
    self.assertTrue(np.all(table >= 0))
    np.testing.assert_allclose(table[0], np.full(inner_steps,
                                                 1 / inner_steps))
    after = table[epochs >= msl_epochs]
    np.testing.assert_array_equal(
        after, np.broadcast_to(schedules.last_step_weights(inner_steps),
                               after.shape))
    # Annealing: early steps lose weight, the last step gains it.
    self.assertTrue(np.all(np.diff(table[:, :-1], axis=0) <= 1e-7))
    self.assertTrue(np.all(np.diff(table[:, -1]) >= -1e-7))
    # The early steps always weigh the same.
    np.testing.assert_array_equal(
        table[:, :-1], np.broadcast_to(table[:, :1], table[:, :-1].shape))

  def test_msl_weights_follow_antoniou(self):
    n, epochs = 5, 10
    np.testing.assert_allclose(ml.msl_weights(n, 0, epochs), np.full(n, 0.2))
    mid = np.asarray(ml.msl_weights(n, 5, epochs))
    np.testing.assert_allclose(mid[:-1], 0.2 - 5 * 0.2 / epochs)
    np.testing.assert_allclose(mid.sum(), 1.0, rtol=1e-6)
    late = np.asarray(ml.msl_weights(n, 9.99, epochs))
    np.testing.assert_allclose(late[:-1], 0.03 / n, rtol=1e-5)
    np.testing.assert_allclose(late[-1], 1 - 4 * 0.03 / n, rtol=1e-5)
    np.testing.assert_allclose(ml.msl_weights(n, epochs, epochs),
                               ml.last_step_weights(n))
    jitted = jax.jit(functools.partial(ml.msl_weights, n, msl_epochs=epochs))
    np.testing.assert_allclose(jitted(5.0), mid, rtol=1e-6)

  def test_msl_weights_one_inner_step_and_bad_arguments(self):
    np.testing.assert_array_equal(schedules.msl_weights(1, 0, 3), [1.0])
    with self.assertRaisesRegex(ValueError, "inner_steps"):
      schedules.msl_weights(0, 0, 3)
    with self.assertRaisesRegex(ValueError, "msl_epochs"):
      schedules.msl_weights(3, 0, 0)


class MslWeightsFnTest(parameterized.TestCase):

  def test_whole_epochs(self):
    n, msl_epochs, per_epoch = 4, 3, 5
    fn = schedules.msl_weights_fn(n, msl_epochs, per_epoch)
    jitted = jax.jit(fn)
    for step in range(0, (msl_epochs + 1) * per_epoch + 2):
      epoch = step // per_epoch
      expected = schedules.msl_weights(n, epoch, msl_epochs)
      np.testing.assert_array_equal(fn(step), expected)
      # Traced step, as inside the compiled meta-step.
      np.testing.assert_allclose(jitted(jnp.int32(step)), expected,
                                 rtol=1e-6)
    # Every step of an epoch shares the weights; the next epoch differs.
    for epoch in range(msl_epochs):
      first = np.asarray(fn(epoch * per_epoch))
      for step in range(epoch * per_epoch + 1, (epoch + 1) * per_epoch):
        np.testing.assert_array_equal(fn(step), first)
      self.assertFalse(np.allclose(fn((epoch + 1) * per_epoch), first))
    np.testing.assert_allclose(fn(0), np.full(n, 1 / n))
    np.testing.assert_array_equal(fn(msl_epochs * per_epoch),
                                  schedules.last_step_weights(n))
    np.testing.assert_array_equal(fn(msl_epochs * per_epoch - 1),
                                  schedules.msl_weights(n, msl_epochs - 1,
                                                        msl_epochs))

  def test_bad_steps_per_epoch(self):
    with self.assertRaisesRegex(ValueError, "steps_per_epoch"):
      schedules.msl_weights_fn(3, 2, 0)


def phase_changes(plan):
  """The steps where ``phase_at`` differs from the step before."""
  phases = [plan.phase_at(s) for s in range(plan.meta_steps)]
  return [s for s in range(1, plan.meta_steps) if phases[s] != phases[s - 1]]


def runs_of_phases(plan):
  """[(phase, first_step, end_step)] for consecutive equal phases."""
  out = []
  for s in range(plan.meta_steps):
    phase = plan.phase_at(s)
    if out and out[-1][0] == phase:
      out[-1] = (phase, out[-1][1], s + 1)
    else:
      out.append((phase, s, s + 1))
  return out


class PhasePlanTest(parameterized.TestCase):

  def plan(self, **kw):
    args = dict(meta_steps=50, steps_per_epoch=10, msl_epochs=2,
                inner_steps=3, first_order_epochs=0)
    args.update(kw)
    plan = schedules.phase_plan(**args)
    # switches() is exactly where phase_at changes.
    self.assertEqual(plan.switches(), phase_changes(plan))
    return plan

  def test_maml_is_one_second_order_phase(self):
    plan = self.plan(first_order=False, multi_step_loss=False)
    self.assertEqual(plan, schedules.PhasePlan(50, False, 0, 0))
    self.assertEqual(runs_of_phases(plan), [(Phase(False, False), 0, 50)])
    self.assertEqual(plan.switches(), [])

  @parameterized.parameters(0, 2)
  def test_fomaml_is_first_order_throughout(self, first_order_epochs):
    plan = self.plan(first_order=True, multi_step_loss=False,
                     first_order_epochs=first_order_epochs)
    self.assertEqual(plan.first_order_end, 0)
    self.assertEqual(runs_of_phases(plan), [(Phase(True, False), 0, 50)])

  def test_mamlpp_multi_step_loss_then_last_step(self):
    plan = self.plan(first_order=False, multi_step_loss=True)
    self.assertEqual(plan.msl_end, 20)
    self.assertEqual(runs_of_phases(plan), [(Phase(False, True), 0, 20),
                                            (Phase(False, False), 20, 50)])
    self.assertEqual(plan.switches(), [20])

  def test_mamlpp_with_derivative_order_annealing(self):
    plan = self.plan(first_order=False, multi_step_loss=True,
                     first_order_epochs=1)
    self.assertEqual(runs_of_phases(plan), [(Phase(True, True), 0, 10),
                                            (Phase(False, True), 10, 20),
                                            (Phase(False, False), 20, 50)])
    self.assertEqual(plan.switches(), [10, 20])
    self.assertEqual(plan.phase_at(9).describe(),
                     "first order, multi-step loss")
    self.assertEqual(plan.phase_at(20).describe(), "second order")
    self.assertEqual(plan.describe(9), "first order, multi-step loss")
    no_order = plan._replace(shows_order=False)
    self.assertEqual(no_order.describe(9), "multi-step loss")
    self.assertEqual(no_order.describe(20), "")

  def test_order_annealing_past_the_multi_step_loss(self):
    plan = self.plan(first_order=False, multi_step_loss=True,
                     first_order_epochs=3)
    self.assertEqual(runs_of_phases(plan), [(Phase(True, True), 0, 20),
                                            (Phase(True, False), 20, 30),
                                            (Phase(False, False), 30, 50)])
    self.assertEqual(plan.switches(), [20, 30])

  def test_first_order_mamlpp(self):
    plan = self.plan(first_order=True, multi_step_loss=True,
                     first_order_epochs=1)
    self.assertEqual(runs_of_phases(plan), [(Phase(True, True), 0, 20),
                                            (Phase(True, False), 20, 50)])
    self.assertEqual(plan.switches(), [20])

  @parameterized.parameters(0, 1)
  def test_one_inner_step_has_no_multi_step_loss_phase(self,
                                                       first_order_epochs):
    plan = self.plan(first_order=False, multi_step_loss=True, inner_steps=1,
                     first_order_epochs=first_order_epochs)
    self.assertEqual(plan.msl_end, 0)
    self.assertTrue(all(not plan.phase_at(s).multi_step_loss
                        for s in range(plan.meta_steps)))
    self.assertEqual(plan.switches(), [10] if first_order_epochs else [])

  def test_switches_coincide_and_clip_to_the_run(self):
    # Both phases end at step 20: one switch.
    plan = self.plan(first_order=False, multi_step_loss=True,
                     first_order_epochs=2)
    self.assertEqual(plan.switches(), [20])
    # Schedules longer than the run never switch, and end at meta_steps.
    plan = self.plan(first_order=False, multi_step_loss=True, msl_epochs=9,
                     first_order_epochs=7)
    self.assertEqual((plan.first_order_end, plan.msl_end), (50, 50))
    self.assertEqual(runs_of_phases(plan), [(Phase(True, True), 0, 50)])
    self.assertEqual(plan.switches(), [])

  def test_end_helpers(self):
    self.assertEqual(schedules.msl_end(100, 3, 10), 30)
    self.assertEqual(schedules.msl_end(25, 3, 10), 25)
    self.assertEqual(schedules.first_order_end(100, 0, 10), 0)
    self.assertEqual(schedules.first_order_end(100, 2, 10), 20)
    self.assertEqual(schedules.first_order_end(15, 2, 10), 15)
