"""Two processes x 2 CPU devices train like one process with 4, or 1, device.

``experiments/train.py`` runs the sine-wave config (a small MLP, so that
compiling is quick) three ways: one process with 4
simulated CPU devices for 6 meta-steps; two processes with 2 devices each
(``--coordinator_address`` on 127.0.0.1, gloo collectives) for 3 meta-steps;
the same two again, resuming to 6. This process (one device) runs the config
too. The checkpoints must agree to float tolerance: tasks are drawn by global
task index, so every layout draws the same tasks. Every child is killed after
a timeout.
"""

import importlib.util
import json
from pathlib import Path
import socket
import subprocess
import sys
import time

import jax
from jax.sharding import SingleDeviceSharding
import numpy as np
import orbax.checkpoint as ocp
import pytest

from metalearn import distributed
from metalearn import train
from tests import test_sharding

_ROOT = Path(__file__).resolve().parents[1]
_CONFIG = _ROOT / "experiments" / "configs" / "sinusoid.py"
_CONFIG_ARG = "maml:10"
TINY = dict(meta_batch_size=4, steps_per_call=3, eval_every=0,
            checkpoint_every=3, val_tasks=0, test_tasks=2, steps_per_epoch=4,
            outer_lr=3e-3, progress=False)
TIMEOUT_S = 240
LONG = 300  # meta-steps of the killed run: it is killed long before the end.


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _command(workdir: Path, meta_steps: int) -> list[str]:
  overrides = {**TINY, "meta_steps": meta_steps}
  return [sys.executable, str(_ROOT / "experiments" / "train.py"),
          f"--config={_CONFIG}:{_CONFIG_ARG}", f"--workdir={workdir}",
          *(f"--config.{k}={v}" for k, v in overrides.items())]


def _env(devices: int) -> dict[str, str]:
  env = test_sharding.child_env(devices)
  env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
  env["METALEARN_JAX_CACHE_DIR"] = env.get("JAX_COMPILATION_CACHE_DIR",
                                           "/tmp/metalearn-test-jax-cache")
  return env


def _run(commands: list[list[str]], devices: int) -> None:
  """Runs the commands side by side; kills them all after TIMEOUT_S."""
  procs = [subprocess.Popen(c, cwd=_ROOT, env=_env(devices),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for c in commands]
  try:
    outputs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]


def _two_process_commands(workdir: Path, meta_steps: int,
                          *flags: str) -> list[list[str]]:
  address = f"127.0.0.1:{_free_port()}"
  return [_command(workdir, meta_steps) + [
      f"--coordinator_address={address}", "--num_processes=2",
      f"--process_id={i}", *flags] for i in range(2)]


def _two_processes(workdir: Path, meta_steps: int, *flags: str) -> None:
  _run(_two_process_commands(workdir, meta_steps, *flags), devices=2)


def _kill_after_first_checkpoint(workdir: Path, meta_steps: int) -> None:
  """Starts both processes and SIGKILLs them once step 3 is saved."""
  procs = [subprocess.Popen(c, cwd=_ROOT, env=_env(2),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
           for c in _two_process_commands(workdir, meta_steps,
                                          "--config.checkpoint_every=3")]
  deadline = time.monotonic() + TIMEOUT_S
  try:
    while not (workdir / "checkpoints" / "3").exists():
      assert time.monotonic() < deadline, "no checkpoint before the timeout"
      assert all(p.poll() is None for p in procs), "a process ended early"
      time.sleep(0.02)
  finally:
    for p in procs:
      p.kill()
      p.wait()


def _params(workdir: Path, step: int) -> list[np.ndarray]:
  """The meta-parameters saved at ``step``, read onto this one device."""
  path = workdir / "checkpoints" / str(step) / "state"
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata
  here = SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), tree)
  state = checkpointer.restore(path, target)
  return [np.asarray(x) for x in jax.tree.leaves(state["meta"]["params"])]


def _rows(workdir: Path) -> list[dict]:
  return [json.loads(l) for l in
          (workdir / "metrics.jsonl").read_text().splitlines()]


def _in_process_config():
  spec = importlib.util.spec_from_file_location("sinusoid_config", _CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(_CONFIG_ARG)
  for k, v in {**TINY, "meta_steps": 6}.items():
    config[k] = v
  return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("distributed")
  _run([_command(root / "one_x4", 6)], devices=4)
  _two_processes(root / "two_x2", 3)
  first_rows = _rows(root / "two_x2")
  _two_processes(root / "two_x2", 6)
  train.train_and_evaluate(_in_process_config(), root / "one_x1")
  # Killed (SIGKILL, both processes) after its first checkpoint, then
  # resumed; it must end where an uninterrupted run ends.
  long_run = ("--config.checkpoint_every=0",)
  _run([_command(root / "one_x4_long", LONG) + list(long_run)], devices=4)
  _kill_after_first_checkpoint(root / "killed", LONG)
  assert not (root / "killed" / "eval.json").exists()
  _two_processes(root / "killed", LONG, *long_run)
  return root, first_rows


def _assert_close(a, b):
  for x, y in zip(a, b, strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_two_processes_match_one_process_with_four_devices(runs):
  root, _ = runs
  _assert_close(_params(root / "two_x2", 3), _params(root / "one_x4", 3))
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      _params(root / "one_x4", 6), _params(root / "one_x4", 3)))
  assert moved > 1e-4  # The parameters really move between checkpoints.


def test_resumed_two_process_run_continues_identically(runs):
  root, first_rows = runs
  _assert_close(_params(root / "two_x2", 6), _params(root / "one_x4", 6))
  rows = _rows(root / "two_x2")
  assert [r["step"] for r in first_rows] == [3]  # process 0 alone writes.
  assert [r["step"] for r in rows] == [3, 6]
  straight = _rows(root / "one_x4")
  np.testing.assert_allclose([r["loss"] for r in rows],
                             [r["loss"] for r in straight], rtol=1e-4)
  summary = json.loads((root / "two_x2" / "eval.json").read_text())
  assert summary["resumed_from"] == 3 and summary["meta_steps"] == 6


def test_killed_two_process_run_resumes_to_the_same_end(runs):
  root, _ = runs
  _assert_close(_params(root / "killed", LONG),
                _params(root / "one_x4_long", LONG))
  summary = json.loads((root / "killed" / "eval.json").read_text())
  assert 3 <= summary["resumed_from"] < LONG


def test_four_devices_match_one_device(runs):
  root, _ = runs
  _assert_close(_params(root / "one_x1", 6), _params(root / "one_x4", 6))


def test_initialize_does_nothing_on_one_process(monkeypatch):
  for name in ("JAX_COORDINATOR_ADDRESS", *distributed.LAUNCHER_COUNTS):
    monkeypatch.delenv(name, raising=False)
  assert not distributed.initialize()
  assert not distributed.initialize(num_processes=1)
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert not distributed.initialize()
  assert distributed.is_writer()
  with pytest.raises(ValueError, match=r"process_id=2 .*\[0, num_proc"):
    distributed.initialize("127.0.0.1:1", num_processes=2, process_id=2)


def test_training_mesh_names_devices_and_meta_batch_size():
  assert distributed.training_mesh(0, 3).devices.size == 1
  assert distributed.training_mesh(1, 3).devices.size == 1
  with pytest.raises(ValueError, match=r"config.devices=2 .*\[0, 1\]"):
    distributed.training_mesh(2, 4, field="config.devices")
