"""A workdir belongs to one run: its lock, and its recorded config."""

import json
import logging
import os
from pathlib import Path
import socket
import subprocess
import sys
import time

import pytest

from metalearn import configs
from metalearn import fingerprint
from metalearn import train
from metalearn import workdir

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300
# Tiny and hermetic (no Omniglot cache): one compile of a 4-filter conv-4.
TINY = dict(dataset="synthetic", n_way=3, k_shot=1, n_query=1,
            eval_n_query=1, filters=8, meta_batch_size=2, meta_steps=2,
            steps_per_call=2, checkpoint_every=2, eval_every=0, val_tasks=2,
            test_tasks=2, inner_steps=1, eval_inner_steps=1, progress=False,
            batching="map")


def tiny(**overrides):
  c = configs.base()
  c.update({**TINY, **overrides})
  return c


# The fields: every one classified, in one place.

def test_every_config_field_is_classified_once():
  assert not fingerprint.TRAINING_FIELDS & fingerprint.RUNTIME_FIELDS
  assert fingerprint.unclassified(configs.base()) == []


def test_renamed_and_new_fields_are_classified():
  for name in ("inner_optimizer", "inner_adam_lr", "reptile_inner",
               "reptile_adam_lr", "plugins", "frozen"):
    assert name in fingerprint.TRAINING_FIELDS
  assert fingerprint.ALLOW in fingerprint.RUNTIME_FIELDS


def test_compare_sorts_changes_and_tolerates_one_sided_fields():
  old = fingerprint.as_record(tiny())
  new = dict(old, n_way=10, progress=True, only_new=1)
  del new["seed"]
  training, runtime = fingerprint.compare(old, new)
  assert [c.field for c in training] == ["n_way"]
  assert sorted(c.field for c in runtime) == ["only_new", "progress", "seed"]


# The lock.

def _holder_process(path: Path) -> subprocess.Popen:
  """A process that claims ``path`` and waits; returns once it holds it."""
  code = (f"import sys, time; from metalearn import workdir\n"
          f"with workdir.claim({str(path)!r}, writer=True):\n"
          f"  print('held', flush=True); time.sleep(120)\n")
  proc = subprocess.Popen([sys.executable, "-c", code],
                          stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_second_claim_is_refused_naming_the_holder(tmp_path):
  proc = _holder_process(tmp_path)
  try:
    with pytest.raises(workdir.WorkdirInUse) as e:
      with workdir.claim(tmp_path, writer=True):
        pass
    message = str(e.value)
    assert f"process {proc.pid} on {socket.gethostname()}" in message
    assert "\n" not in message
  finally:
    proc.kill()
    proc.wait(timeout=TIMEOUT)
  # The holder was killed: its lock is gone and its record is stale.
  with workdir.claim(tmp_path, writer=True):
    assert workdir.holder(tmp_path).pid == os.getpid()
  assert workdir.holder(tmp_path) is None  # released cleanly


def test_stale_lock_is_taken_over_with_a_note(tmp_path, caplog):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  pid = int(dead.stdout)
  (tmp_path / workdir.LOCK_FILE).write_text(json.dumps(
      {"host": socket.gethostname(), "pid": pid, "since": "earlier"}))
  with caplog.at_level(logging.WARNING, logger="metalearn.workdir"):
    with workdir.claim(tmp_path, writer=True):
      pass
  notes = [r.getMessage() for r in caplog.records
           if r.name == "metalearn.workdir"]
  assert len(notes) == 1 and f"process {pid}" in notes[0]
  assert "no longer running" in notes[0]


def test_nested_claim_and_non_writer_processes(tmp_path):
  with workdir.claim(tmp_path, writer=True):
    with workdir.claim(tmp_path, writer=True):
      pass
    assert workdir.holder(tmp_path).pid == os.getpid()
  assert workdir.holder(tmp_path) is None
  proc = _holder_process(tmp_path)
  try:
    with workdir.claim(tmp_path, writer=False):  # jax.distributed's others.
      pass
  finally:
    proc.kill()
    proc.wait(timeout=TIMEOUT)


def test_second_run_of_the_binary_stops_at_once(tmp_path):
  proc = _holder_process(tmp_path)
  try:
    start = time.monotonic()
    second = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "train.py"),
         f"--config={ROOT / 'experiments' / 'configs' / 'cpu_small.py'}",
         f"--workdir={tmp_path}", "--config.dataset=synthetic"],
        capture_output=True, text=True, timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
  finally:
    proc.kill()
    proc.wait(timeout=TIMEOUT)
  assert second.returncode == 2, second.stderr[-2000:]
  lines = second.stderr.strip().splitlines()
  assert len(lines) == 1, second.stderr[-2000:]
  assert f"in use by process {proc.pid} on {socket.gethostname()}" in lines[0]
  assert time.monotonic() - start < 60  # before anything was built
  assert not (tmp_path / "checkpoints").exists()


# The recorded config, through train_and_evaluate.

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished tiny MAML run."""
  path = tmp_path_factory.mktemp("run")
  train.train_and_evaluate(tiny(), path)
  return path


def _snapshot(path: Path) -> dict:
  return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size)
          for p in path.rglob("*") if p.is_file()
          and p.name != workdir.LOCK_FILE}


@pytest.mark.parametrize("overrides, message", [
    (dict(algorithm="fomaml"),
     "was started with algorithm='maml'; you asked for 'fomaml'"),
    (dict(n_way=10), "was started with n_way=3; you asked for 10"),
    (dict(n_way=10, seed=1),
     "was started with n_way=3, seed=0; you asked for n_way=10, seed=1"),
])
def test_resume_with_other_training_fields_is_refused_touching_nothing(
    trained, monkeypatch, overrides, message):
  before = _snapshot(trained)
  monkeypatch.setattr(train.build, "build_experiment", lambda c: pytest.fail(
      "built before the config was checked"))
  with pytest.raises(fingerprint.ConfigChanged, match=message) as e:
    train.train_and_evaluate(tiny(**overrides), trained)
  assert "allow_config_change" in str(e.value)
  assert _snapshot(trained) == before


def test_allowed_changes_are_recorded_with_every_start(trained, tmp_path):
  workdir_copy = tmp_path / "copy"
  subprocess.run(["cp", "-a", str(trained), str(workdir_copy)], check=True)
  # How it runs: allowed. A deliberate change: allowed when asked for.
  train.train_and_evaluate(tiny(eval_chunk_size=1, description="rerun"),
                           workdir_copy)
  train.train_and_evaluate(tiny(inner_lr=0.2, allow_config_change=True),
                           workdir_copy)
  starts = fingerprint.starts(workdir_copy)
  assert [s["step"] for s in starts] == [0, 2, 2]
  assert starts[0]["config"]["inner_lr"] == 0.4
  assert "description '' -> 'rerun'" in starts[1]["changed"]
  assert "inner_lr 0.4 -> 0.2" in starts[2]["changed"]
  # The config in effect is the latest; a resume compares with it.
  assert json.loads((workdir_copy / "config.json").read_text())[
      "inner_lr"] == 0.2
  with pytest.raises(fingerprint.ConfigChanged, match="inner_lr=0.2"):
    train.train_and_evaluate(tiny(), workdir_copy)
