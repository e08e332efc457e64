"""Faults a run survives, through the train binary as a user would hit them.

Each fault ends either with a run whose final parameters equal an
uninterrupted run's, or with the stated one-line error. Every process is
bounded by a timeout and every kill is one this test sends itself.
"""

import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from metalearn import runs

ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(n_way=3, n_query=2, eval_n_query=2, filters=4,
             meta_batch_size=2, meta_steps=12, steps_per_call=2,
             checkpoint_every=2, eval_every=4, val_tasks=4, test_tasks=4,
             conv_impl="xla", batching="map", progress=False)
TIMEOUT = 600


def command(workdir, cache_dir, **overrides):
  sizes = {**SIZES, "cache_dir": cache_dir, **overrides}
  return [sys.executable, str(ROOT / "experiments" / "train.py"),
          f"--config={ROOT / 'experiments' / 'configs' / 'cpu_small.py'}",
          f"--workdir={workdir}",
          *(f"--config.{k}={v}" for k, v in sizes.items())]


def environment(jax_cache: Path) -> dict:
  return {**os.environ, "PYTHONPATH": str(ROOT),
          "METALEARN_JAX_CACHE_DIR": str(jax_cache)}


def train(workdir, cache_dir, jax_cache, **overrides):
  proc = subprocess.run(command(workdir, cache_dir, **overrides),
                        capture_output=True, text=True,
                        env=environment(jax_cache), timeout=TIMEOUT,
                        check=False)
  return proc


def final_state(workdir):
  return runs.restore(workdir, "latest")


def assert_same_final_state(a, b):
  assert a.step == b.step == SIZES["meta_steps"]
  jax.tree.map(np.testing.assert_array_equal, a.meta, b.meta)


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
  return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, omniglot_cache_dir, jax_cache):
  """An uninterrupted run and how long it took."""
  workdir = tmp_path_factory.mktemp("reference")
  start = time.monotonic()
  proc = train(workdir, omniglot_cache_dir, jax_cache)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return final_state(workdir), time.monotonic() - start


def test_kill_9_at_random_points_resumes_to_the_same_state(
    tmp_path, omniglot_cache_dir, jax_cache, reference):
  expected, seconds = reference
  rng = random.Random(0)
  for trial in range(3):
    workdir = tmp_path / f"trial{trial}"
    proc = subprocess.Popen(command(workdir, omniglot_cache_dir),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env=environment(jax_cache))
    try:
      proc.wait(timeout=rng.uniform(0.3, 1.0) * seconds)
    except subprocess.TimeoutExpired:
      proc.kill()  # SIGKILL: no handler runs, a checkpoint may be half-written
    proc.wait(timeout=TIMEOUT)
    done = train(workdir, omniglot_cache_dir, jax_cache)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_final_state(final_state(workdir), expected)
    rows = runs.read_metrics(workdir)
    for kind in (rows.train, rows.val):
      steps = [r["step"] for r in kind]
      assert steps == sorted(set(steps)), steps


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_stops_and_resumes(tmp_path, omniglot_cache_dir,
                                        jax_cache, reference, signum):
  proc = subprocess.Popen(command(tmp_path, omniglot_cache_dir),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=environment(jax_cache))
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.monotonic() + TIMEOUT
  while not (metrics.exists() and metrics.read_text()):
    assert proc.poll() is None and time.monotonic() < deadline
    time.sleep(0.05)
  proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=TIMEOUT)
  assert proc.returncode == 128 + signum, stderr[-3000:]
  line = stderr.strip().splitlines()[-1]
  assert "stopped at meta-step" in line and "rerun the same command" in line
  assert "Traceback" not in stderr
  step = int(line.split("meta-step ")[1].split()[0])
  assert 0 < step < SIZES["meta_steps"]
  assert runs.read_metrics(tmp_path).train[-1]["step"] == step
  done = train(tmp_path, omniglot_cache_dir, jax_cache)
  assert done.returncode == 0, done.stderr[-3000:]
  assert_same_final_state(final_state(tmp_path), reference[0])


def _damage(step_dir: Path, how: str) -> None:
  """Flips 64 bytes in, or truncates, the largest array file of a step."""
  # The array data the restore reads: state/d/<hash> (orbax's merged
  # OCDBT store; the per-process copies under ocdbt.process_0 are not read).
  files = [p for p in (step_dir / "state").glob("d/*")
           if p.stat().st_size > 128]
  target = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  if how == "flip":
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
  else:
    data = data[:len(data) // 2]
  target.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_damaged_newest_checkpoint_falls_back(tmp_path, omniglot_cache_dir,
                                              jax_cache, reference, how):
  # Train to step 8, damage step 8, rerun to 12: it resumes from step 6.
  first = train(tmp_path, omniglot_cache_dir, jax_cache, meta_steps=8)
  assert first.returncode == 0, first.stderr[-3000:]
  _damage(tmp_path / "checkpoints" / "8", how)
  done = train(tmp_path, omniglot_cache_dir, jax_cache)
  assert done.returncode == 0, done.stderr[-3000:]
  warnings = [l for l in done.stderr.splitlines() if "unusable" in l]
  assert len(warnings) == 1 and "step 8" in warnings[0], done.stderr[-3000:]
  assert "trying step 6" in warnings[0]
  summary = json.loads((tmp_path / "eval.json").read_text())
  assert summary["resumed_from"] == 6
  assert_same_final_state(final_state(tmp_path), reference[0])


def test_no_usable_checkpoint_is_one_clear_error(tmp_path, omniglot_cache_dir,
                                                 jax_cache):
  first = train(tmp_path, omniglot_cache_dir, jax_cache, meta_steps=4)
  assert first.returncode == 0, first.stderr[-3000:]
  for step in ("2", "4"):
    _damage(tmp_path / "checkpoints" / step, "flip")
  done = train(tmp_path, omniglot_cache_dir, jax_cache)
  assert done.returncode == 1
  last = done.stderr.strip().splitlines()[-1]
  assert "no usable checkpoint" in last and "step 4" in last, last
  assert "Traceback" not in done.stderr


def test_a_failed_file_operation_is_one_line(tmp_path):
  # E.g. the cache directory removed while a run builds it: the OSError
  # reaches the binary's handler (metalearn.cli) and prints one line.
  gone = tmp_path / "cache" / "omniglot.tmp"
  code = (
      "import sys\nfrom absl import app\nfrom metalearn import cli\n"
      "def main():\n"
      f"  open({str(gone)!r}, 'wb')\n"
      "app.run(lambda argv: cli.run_main(main), "
      "argv=sys.argv[:1] + ['--nocompilation_cache'])\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, timeout=120, check=False,
                        env=environment(tmp_path / "jax"))
  assert proc.returncode == 1, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert lines == [f"-c: No such file or directory: {gone}"], proc.stderr
