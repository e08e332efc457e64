"""Sharded and single-device meta-steps agree; the meta-batch must divide.

The multi-device check runs in a child process started with 4 simulated CPU
devices (``--xla_force_host_platform_device_count`` only takes effect before
JAX initialises its backend), so the rest of the suite keeps one device.
"""

import json
import os
import subprocess
import sys

import jax
from jax.sharding import PartitionSpec
import numpy as np
import pytest

import metalearn as ml

from metalearn import sharding

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child_main() -> None:
  """Runs in the 4-device child: prints a JSON report of the comparison."""
  import optax  # pylint: disable=g-import-not-at-top
  from metalearn import benchmark  # pylint: disable=g-import-not-at-top
  from metalearn import core  # pylint: disable=g-import-not-at-top
  from metalearn import schedules  # pylint: disable=g-import-not-at-top
  from metalearn import step as step_lib  # pylint: disable=g-import-not-at-top
  from metalearn.models import mlp  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_numpy_rank_promotion", "raise")
  model = mlp(3, input_shape=(6, 6, 1), hidden=(8,))
  key = jax.random.key(0)
  # Setup under jit: eager ops would each compile on their own, slowly.
  params = jax.jit(model.init)(key)
  lrs = jax.jit(lambda p: ml.fixed_inner_lrs(p, 0.3, 2))(params)
  opt = optax.adam(1e-2)
  data = benchmark.synthetic_dataset(0, num_classes=10, image_size=6)
  task_fn = benchmark.synthetic_task_fn(3, 1, 2, meta_batch_size=8)

  def build(mesh, steps_per_call):
    return step_lib.make_meta_step(
        model.apply, opt, task_fn, lambda s: schedules.last_step_weights(2),
        steps_per_call=steps_per_call,
        task_sharding=None if mesh is None else sharding.task_sharding(mesh))

  init = jax.jit(lambda: step_lib.init_meta_state(
      params, lrs, opt, learn_inner_lrs=False))
  # One device, one meta-step per call, no sharding at all.
  single = init()
  step = build(None, 1)
  for _ in range(2):
    single, _ = step(single, data, key)
  # All four devices, both meta-steps in one call.
  mesh = sharding.make_mesh()
  sharded_step = build(mesh, 2)
  state = sharding.replicate(init(), mesh)
  rep_data = sharding.replicate(data, mesh)
  compiled = sharded_step.lower(state, rep_data, key).compile()
  hlo = compiled.as_text()
  state, _ = compiled(state, rep_data, key)
  tasks = jax.jit(lambda k: jax.lax.with_sharding_constraint(
      task_fn(k, rep_data), sharding.task_sharding(mesh)))(key)
  leaves = jax.tree.leaves(state.meta.params)
  as_np = lambda t: [np.asarray(x) for x in jax.tree.leaves(t)]  # noqa: E731
  report = {
      "devices": len(jax.devices()),
      "mesh_size": sharding.num_devices(mesh),
      "max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(
          as_np(leaves), as_np(single.meta.params))),
      "max_abs_update": max(float(np.max(np.abs(a - b))) for a, b in zip(
          as_np(leaves), as_np(params))),
      "params_replicated": all(x.sharding.is_fully_replicated
                               for x in leaves),
      "task_shard_rows": sorted({s.data.shape[0]
                                 for s in tasks.query_x.addressable_shards}),
      "all_reduce": "all-reduce" in hlo,
      "steps": int(state.step),
      **_train_maml_report(),
  }
  print(json.dumps(report))


def _train_maml_report() -> dict:
  """train_maml on 1 and on all 4 devices; and an indivisible meta-batch."""
  from metalearn import api  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top

  pool = jax.jit(helpers.tiny_tasks, static_argnames="num_tasks")(
      jax.random.key(1), num_tasks=8)
  runs = {d: api.train_maml(helpers.tiny_model(), pool, meta_batch_size=4,
                            meta_steps=3, devices=d, progress=False)
          for d in (1, 0)}
  try:
    api.train_maml(helpers.tiny_model(), pool, meta_batch_size=6,
                   meta_steps=1, progress=False)
    error = ""
  except ValueError as e:
    error = str(e)
  leaves = {d: jax.tree.leaves(r.params) for d, r in runs.items()}
  return {
      "train_maml_devices": {str(d): len(v[0].sharding.device_set)
                             for d, v in leaves.items()},
      "train_maml_max_abs_diff": max(
          float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
          for a, b in zip(leaves[0], leaves[1])),
      "train_maml_losses_close": bool(np.allclose(
          runs[0].losses, runs[1].losses, rtol=1e-5)),
      "indivisible_error": error,
  }


def child_env(device_count: int) -> dict[str, str]:
  """Environment of a child process with ``device_count`` CPU devices.

  It shares this suite's persistent compilation cache (see conftest.py), so
  a rerun does not recompile.
  """
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": _ROOT,
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={device_count}"}
  cache = jax.config.jax_compilation_cache_dir
  if cache:
    env.update(JAX_COMPILATION_CACHE_DIR=cache,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env


@pytest.fixture(scope="module")
def four_device_report():
  env = child_env(4)
  proc = subprocess.run(
      [sys.executable, "-c",
       "from tests import test_sharding as t; t._child_main()"],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_child_sees_four_devices(four_device_report):
  assert four_device_report["devices"] == 4
  assert four_device_report["mesh_size"] == 4


def test_sharded_step_matches_single_device(four_device_report):
  r = four_device_report
  assert r["steps"] == 2
  assert r["max_abs_update"] > 1e-3  # the parameters really moved ...
  assert r["max_abs_diff"] < 1e-5    # ... and identically on 1 or 4 devices.


def test_tasks_are_split_and_params_replicated(four_device_report):
  r = four_device_report
  assert r["task_shard_rows"] == [2]  # 8 tasks over 4 devices.
  assert r["params_replicated"]
  assert r["all_reduce"]  # the meta-gradient is summed across devices.


def test_train_maml_splits_over_every_device_by_default(four_device_report):
  r = four_device_report
  assert r["train_maml_devices"] == {"0": 4, "1": 1}
  assert r["train_maml_max_abs_diff"] < 1e-5
  assert r["train_maml_losses_close"]
  assert "meta_batch_size=6" in r["indivisible_error"]
  assert "(4)" in r["indivisible_error"]
  assert "devices" in r["indivisible_error"]


def test_check_divisible():
  sharding.check_divisible(8, 4)
  sharding.check_divisible(3, sharding.make_mesh())  # one device here
  with pytest.raises(ValueError, match=r"meta_batch_size=6.*\(4\)"):
    sharding.check_divisible(6, 4)
  with pytest.raises(ValueError, match="meta_batch_size=0"):
    sharding.check_divisible(0, 1)


def test_single_device_mesh_and_replicate_keep_none_leaves():
  mesh = sharding.make_mesh(jax.devices()[:1])
  assert mesh.shape == {sharding.TASK_AXIS: 1}
  tree = {"w": np.ones((2, 3), np.float32), "frozen": None}
  out = sharding.replicate(tree, mesh)
  assert out["frozen"] is None
  assert out["w"].sharding == sharding.replicated(mesh)
  np.testing.assert_array_equal(out["w"], tree["w"])
  assert sharding.task_sharding(mesh).spec == PartitionSpec(sharding.TASK_AXIS)
