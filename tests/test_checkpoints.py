"""Checkpoints verify themselves and fall back to an older good step."""

import logging
from pathlib import Path
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metalearn import checkpoint_records
from metalearn import checkpoints
from metalearn.step import MetaState
from metalearn.types import MetaParams


def _state(step, seed=0):
  """A tiny MLP-shaped state whose values depend on ``seed``."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  params = {"dense1": {"kernel": jax.random.normal(k1, (32, 32)),
                       "bias": jnp.zeros(32)},
            "out": {"kernel": jax.random.normal(k2, (32, 3))}}
  lrs = jax.tree.map(lambda p: jnp.full((2,), 0.1), params)
  opt = optax.adam(1e-3)
  opt_state = opt.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  opt_state = opt.update(grads, opt_state, params)[1]
  return MetaState(jnp.int32(step), MetaParams(params, lrs), opt_state)


def _assert_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(x).dtype == np.asarray(y).dtype


def _saved(tmp_path, steps=(10, 20), kind="latest"):
  ckpt = checkpoints.Checkpointer(tmp_path, keep=len(steps))
  states = {s: _state(s, seed=s) for s in steps}
  for s in steps:
    if kind == "latest":
      ckpt.save_latest(s, states[s])
    else:
      ckpt.save_best(s, states[s], val_accuracy=s / 100)
  ckpt.wait()
  return states


def _biggest_array_file(step_dir):
  files = [p for p in (step_dir / "state").rglob("*")
           if p.is_file() and "d" in p.parent.name]
  return max(files, key=lambda p: p.stat().st_size)


def _flip(path, n=64):
  data = bytearray(path.read_bytes())
  start = len(data) // 2
  for i in range(start, start + n):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


def _truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records
          if r.name == "metalearn.checkpoints"]


def test_roundtrip_restores_newest_exactly(tmp_path):
  states = _saved(tmp_path)
  got = checkpoints.Checkpointer(tmp_path).restore_latest(_state(0, seed=99))
  _assert_equal(got, states[20])


def test_no_checkpoint_returns_template(tmp_path):
  ckpt = checkpoints.Checkpointer(tmp_path)
  template = _state(0)
  assert ckpt.restore_latest(template) is template
  assert ckpt.latest_step() is None
  assert ckpt.restore_best(template) is None


def test_byte_flip_falls_back_to_older_step(tmp_path, caplog):
  states = _saved(tmp_path)
  _flip(_biggest_array_file(tmp_path / "checkpoints" / "20"))
  ckpt = checkpoints.Checkpointer(tmp_path)
  assert ckpt.latest_step() == 20
  with caplog.at_level(logging.WARNING):
    got = ckpt.restore_latest(_state(0, seed=99))
  _assert_equal(got, states[10])
  lines = _warnings(caplog)
  assert len(lines) == 1
  assert "step 20" in lines[0] and "trying step 10" in lines[0]
  assert "\n" not in lines[0]
  assert ckpt.latest_step() == 10
  assert (tmp_path / "unusable" / "checkpoints" / "20").is_dir()


def test_checksum_mismatch_names_the_leaf(tmp_path, caplog):
  states = _saved(tmp_path)
  ckpt = checkpoints.Checkpointer(tmp_path)
  # A state that orbax reads back without complaint but whose record differs.
  sums = tmp_path / "checkpoints" / "20" / "checksums" / "metadata"
  text = sums.read_text()
  want = checkpoint_records.checksums(states[20])["leaves"]
  digest = want["opt_state.0.mu.dense1.kernel"]["sha256"]
  sums.write_text(text.replace(digest, "0" * len(digest)))
  with caplog.at_level(logging.WARNING):
    got = ckpt.restore_latest(_state(0))
  _assert_equal(got, states[10])
  (line,) = _warnings(caplog)
  assert "step 20" in line
  assert "opt_state.0.mu.dense1.kernel: checksum mismatch" in line


def test_truncated_newest_step_falls_back(tmp_path, caplog, capsys):
  states = _saved(tmp_path)
  _truncate(_biggest_array_file(tmp_path / "checkpoints" / "20"))
  with caplog.at_level(logging.WARNING):
    got = checkpoints.Checkpointer(tmp_path).restore_latest(_state(0))
  _assert_equal(got, states[10])
  (line,) = _warnings(caplog)
  assert "step 20" in line and "reading" in line
  captured = capsys.readouterr()
  assert "Traceback" not in captured.err + captured.out
  assert "Event loop is closed" not in captured.err + captured.out


def test_missing_file_and_missing_record_fall_back(tmp_path, caplog):
  states = _saved(tmp_path, steps=(10, 20, 30))
  ckpt = checkpoints.Checkpointer(tmp_path, keep=3)
  _biggest_array_file(tmp_path / "checkpoints" / "30").unlink()
  (tmp_path / "checkpoints" / "20" / "checksums" / "metadata").write_text(
      '{"format": 1, "leav')  # A half-written record.
  with caplog.at_level(logging.WARNING):
    got = ckpt.restore_latest(_state(0))
  _assert_equal(got, states[10])
  lines = _warnings(caplog)
  assert len(lines) == 2
  assert "step 30" in lines[0] and "meta.params.dense1.kernel" in lines[0]
  assert "step 20" in lines[1] and "checksums record unreadable" in lines[1]


def test_resave_after_fallback(tmp_path):
  _saved(tmp_path)
  _flip(_biggest_array_file(tmp_path / "checkpoints" / "20"))
  ckpt = checkpoints.Checkpointer(tmp_path)
  ckpt.restore_latest(_state(0))
  again = _state(20, seed=7)
  ckpt.save_latest(20, again)
  ckpt.wait()
  got = checkpoints.Checkpointer(tmp_path).restore_latest(_state(0))
  _assert_equal(got, again)


def test_all_steps_bad_raises_listing_them(tmp_path, caplog):
  _saved(tmp_path)
  _flip(_biggest_array_file(tmp_path / "checkpoints" / "20"))
  _truncate(_biggest_array_file(tmp_path / "checkpoints" / "10"))
  ckpt = checkpoints.Checkpointer(tmp_path)
  with caplog.at_level(logging.WARNING):
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"tried step 20: .*; step 10: "):
      ckpt.restore_latest(_state(0))
  assert len(_warnings(caplog)) == 2
  # Nothing is moved when nothing could be restored.
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
      "10", "20"]


def test_damaged_best_returns_none_with_one_line(tmp_path, caplog):
  _saved(tmp_path, steps=(10,), kind="best")
  _flip(_biggest_array_file(tmp_path / "best" / "10"))
  ckpt = checkpoints.Checkpointer(tmp_path)
  with caplog.at_level(logging.WARNING):
    assert ckpt.restore_best(_state(0)) is None
  (line,) = _warnings(caplog)
  assert "best checkpoint step 10" in line
  # A later, worse best is kept now that the damaged one is out of the way.
  ckpt.save_best(30, _state(30, seed=3), val_accuracy=0.01)
  ckpt.wait()
  _assert_equal(ckpt.restore_best(_state(0)), _state(30, seed=3))


def test_best_roundtrip(tmp_path):
  states = _saved(tmp_path, steps=(10, 20), kind="best")
  got = checkpoints.Checkpointer(tmp_path).restore_best(_state(0))
  _assert_equal(got, states[20])


def test_failed_restore_prints_one_line_in_a_fresh_process(tmp_path):
  _saved(tmp_path)
  _truncate(_biggest_array_file(tmp_path / "checkpoints" / "20"))
  code = textwrap.dedent(f"""
      import gc, logging, sys
      sys.path.insert(0, {str(Path(__file__).parent)!r})
      from test_checkpoints import _state
      from metalearn import checkpoints
      ckpt = checkpoints.Checkpointer({str(tmp_path)!r})
      print("restored", int(ckpt.restore_latest(_state(0)).step))
      gc.collect()
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, timeout=300)
  assert out.stdout.strip() == "restored 10"
  lines = [l for l in out.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, out.stderr
  assert "step 20" in lines[0] and "trying step 10" in lines[0]


# Writes that fail: a real full (then read-only) file system, through the
# binaries' error handling (metalearn.cli) in a fresh process.

_SAVER = textwrap.dedent("""
    import sys
    from absl import app
    import jax, jax.numpy as jnp, optax
    from metalearn import checkpoints, cli
    from metalearn.step import MetaState
    from metalearn.types import MetaParams

    def state(step):  # ~400 KB of incompressible parameters.
      params = {"w": jax.random.normal(jax.random.key(step), (100_000,))}
      lrs = {"w": jnp.full((1,), 0.1)}
      return MetaState(jnp.int32(step), MetaParams(params, lrs),
                       optax.sgd(0.1).init(params))

    def main():
      ckpt = checkpoints.Checkpointer(sys.argv[1])
      start = int(ckpt.restore_latest(state(0)).step)
      print("resumed from", start, flush=True)
      for step in range(start + 1, int(sys.argv[2]) + 1):
        ckpt.save_latest(step, state(step))
      ckpt.wait()
      print("saved", flush=True)

    app.run(lambda argv: cli.run_main(main), argv=sys.argv[:1] +
            ["--nocompilation_cache"])
""")


def _save_steps(workdir, last):
  return subprocess.run([sys.executable, "-c", _SAVER, str(workdir),
                         str(last)], capture_output=True, text=True,
                        timeout=120, check=False)


@pytest.fixture
def small_fs(tmp_path):
  """A 600 KB tmpfs: one checkpoint of :data:`_SAVER` fits, two do not."""
  mount = tmp_path / "fs"
  mount.mkdir()
  subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs",
                  str(mount)], check=True)
  yield mount
  subprocess.run(["umount", "-l", str(mount)], check=True)


def _remount(mount, options):
  subprocess.run(["mount", "-o", f"remount,{options}", str(mount)],
                 check=True)


def test_full_disk_then_read_only_are_one_line_and_the_rerun_resumes(
    small_fs):
  workdir = small_fs / "run"
  full = _save_steps(workdir, 2)
  assert full.returncode == 1, full.stderr[-3000:]
  lines = [l for l in full.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, full.stderr[-3000:]
  assert ("no space left on device while writing checkpoint step 2 in "
          f"{workdir / 'checkpoints'}; the last good checkpoint is step 1"
          in lines[0]), lines[0]
  assert "Free space and rerun" in lines[0]
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1"]
  _remount(small_fs, "size=4m")  # Space freed: the rerun resumes.
  done = _save_steps(workdir, 2)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.split() == ["resumed", "from", "1", "saved"]
  _remount(small_fs, "ro")
  read_only = _save_steps(workdir, 3)
  assert read_only.returncode == 1, read_only.stderr[-3000:]
  lines = [l for l in read_only.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, read_only.stderr[-3000:]
  assert "read-only file system while writing checkpoint step 3" in lines[0]
  assert "last good checkpoint is step 2" in lines[0]
