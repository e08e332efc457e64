"""The benchmark's PyTorch-peer plumbing, with fake peer interpreters.

CI has no torch: a fake interpreter (a small Python script) stands in for
one that has it, answers the torch check and prints a canned result line,
so what the benchmark passes, parses, computes and writes is tested here.
The real peer's MAML is tested in tests/test_torch_peer.py where torch is
importable.
"""

import ast
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from metalearn import benchmark
from metalearn.benchmark import peer
from tests import helpers

_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Workload A of the peer comparison, and a tiny one to run for real.
_A = benchmark.Workload("fomaml", meta_batch_size=4, n_way=5, k_shot=1,
                        n_query=15, inner_steps=5, filters=32)
_TINY = benchmark.Workload("fomaml", meta_batch_size=2, n_way=3, k_shot=1,
                           n_query=2, inner_steps=1, filters=2, num_blocks=1)

# After the shared head: prints noise, then a result line: 3 tasks/s per
# task of the batch.
_FAKE = helpers.FAKE_PEER_HEAD + """args = dict(a[2:].split("=", 1) for a in sys.argv[2:])
if args["algorithm"] not in ("maml", "fomaml"):
  sys.exit("torch_peer.py: error: argument --algorithm: invalid choice")
print("a warning on stdout")
tasks = int(args["meta_batch_size"])
print(json.dumps({{"peer": "fake-loop", "torch_version": "9.9.9+fake",
                  "threads": 1, "tasks_per_s": 3.0 * tasks,
                  "step_s_median": 1 / 3.0}}))
"""
# An interpreter without torch, as an unprepared virtual environment.
_NO_TORCH = """#!{python}
import sys
sys.exit("ModuleNotFoundError: No module named 'torch'")
"""


def _executable(path: pathlib.Path, text: str) -> str:
  path.write_text(text)
  path.chmod(path.stat().st_mode | stat.S_IXUSR)
  return str(path)


@pytest.fixture
def fake_peer(tmp_path):
  log = tmp_path / "argv.jsonl"
  python = _executable(tmp_path / "fake_python",
                       _FAKE.format(python=sys.executable, log=str(log)))
  return python, log


@pytest.fixture
def no_torch(tmp_path):
  return _executable(tmp_path / "no_torch_python",
                     _NO_TORCH.format(python=sys.executable))


def test_peer_command_passes_the_workload_and_timing():
  cmd = peer.peer_command("py", _A, benchmark.Timing(2, 5, 4), seed=3)
  assert cmd[:2] == ["py", peer.SCRIPT] and os.path.isfile(peer.SCRIPT)
  args = dict(a[2:].split("=", 1) for a in cmd[2:])
  assert args == {
      "algorithm": "fomaml", "meta_batch_size": "4", "n_way": "5",
      "k_shot": "1", "n_query": "15", "inner_steps": "5", "filters": "32",
      "num_blocks": "4", "image_size": "28", "channels": "1",
      "model": "conv4", "warmup": "2", "chunks": "5", "steps_per_chunk": "4",
      "seed": "3", "inner_lr": str(benchmark.workloads.INNER_LR),
      "outer_lr": str(benchmark.workloads.OUTER_LR)}


def test_the_peer_script_accepts_the_command():
  pytest.importorskip("torch")
  from tests import test_torch_peer  # pylint: disable=g-import-not-at-top
  cmd = peer.peer_command("py", _A, benchmark.Timing(2, 5, 4))
  args = test_torch_peer.peer.parse_args(cmd[2:])
  assert (args.algorithm, args.filters, args.inner_steps, args.n_query,
          args.meta_batch_size, args.chunks) == ("fomaml", 32, 5, 15, 4, 5)
  assert args.inner_lr == benchmark.workloads.INNER_LR


def test_with_peer_sets_the_ratio_on_every_row():
  ok = benchmark.Row("maml", "tuned", 4, 5, 1, 15, 5, 32, tasks_per_s=6.0,
                     step_s_median=4 / 6, step_s_p25=.6, step_s_p75=.7,
                     compile_s=1.0)
  failed = ok._replace(mode="plain", tasks_per_s=None, error="OOM")
  result = {"peer": "fake-loop", "torch_version": "9", "threads": 2,
            "tasks_per_s": 8.0, "step_s_median": 0.5}
  rows = peer.with_peer([ok, failed], result)
  assert [r.vs_peer for r in rows] == [0.75, None]
  assert all(r.peer_tasks_per_s == 8.0 and r.peer_step_s_median == 0.5
             for r in rows)
  table = benchmark.markdown_table(rows)
  assert "| PyTorch tasks/s | metalearn / PyTorch |" in table
  assert "| 8.0 | 0.75x |" in table
  assert "Peer: fake-loop (torch 9, 2 threads)." in table
  lines = table.splitlines()
  # Every line of the table has as many cells as the head.
  assert len({line.count("|") for line in lines[:4]}) == 1
  (bad,) = peer.with_peer([ok], error="RuntimeError: peer exited")
  assert bad.vs_peer is None and bad.peer_tasks_per_s is None
  assert "peer error: RuntimeError: peer exited" in benchmark.markdown_table(
      [bad])
  # Without a peer the table is as before: no peer columns.
  assert "PyTorch" not in benchmark.markdown_table([ok])


def test_measure_peer_reads_the_last_line_or_raises(fake_peer):
  python, log = fake_peer
  result = peer.measure_peer(python, _A, benchmark.Timing(1, 2, 3))
  assert result["tasks_per_s"] == 12.0
  (argv,) = [json.loads(line) for line in log.read_text().splitlines()]
  assert argv[0] == peer.SCRIPT and "--inner_steps=5" in argv
  with pytest.raises(RuntimeError, match="invalid choice"):
    peer.measure_peer(python, _A._replace(algorithm="mamlpp"),
                      benchmark.Timing())


def test_run_grid_records_the_peer_beside_each_row(fake_peer, tmp_path):
  python, log = fake_peer
  rows = benchmark.run_grid(
      [_TINY, _TINY._replace(algorithm="nope")],
      [benchmark.parse_mode("tuned")], benchmark.Timing(1, 1, 1),
      peer_python=python)
  ok, failed = rows
  assert ok.error is None and ok.peer_tasks_per_s == 6.0
  assert ok.vs_peer == pytest.approx(ok.tasks_per_s / 6.0)
  assert ok.peer == "fake-loop (torch 9.9.9+fake, 1 threads)"
  # Both sides fail on an unknown algorithm: two errors, no ratio.
  assert failed.error.startswith("ValueError") and failed.vs_peer is None
  assert "invalid choice" in failed.peer_error
  # One peer run per workload, at the workload's shapes and timing.
  runs = [dict(a[2:].split("=", 1) for a in json.loads(line)[1:])
          for line in log.read_text().splitlines()]
  assert [(r["algorithm"], r["meta_batch_size"], r["filters"],
           r["num_blocks"], r["chunks"]) for r in runs] == [
               ("fomaml", "2", "2", "1", "1"), ("nope", "2", "2", "1", "1")]
  benchmark.write_results(rows, str(tmp_path / "out"))
  written = [json.loads(line) for line in
             (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
  assert written[0]["vs_peer"] == pytest.approx(ok.vs_peer)
  assert written[0]["peer_tasks_per_s"] == 6.0
  assert benchmark.read_results(str(tmp_path / "out" / "results.jsonl")) == (
      rows)
  md = (tmp_path / "out" / "results.md").read_text()
  assert f"| 6.0 | {ok.vs_peer:.2f}x |" in md and "peer error:" in md


def test_an_interpreter_without_torch_is_a_clear_error(no_torch, tmp_path):
  for python in (no_torch, str(tmp_path / "missing")):
    with pytest.raises(ValueError, match="--peer_python.*pip install"):
      peer.check_peer_python(python)
  # Checked before anything is measured: a workload that would fail to
  # build is never reached.
  with pytest.raises(ValueError, match="cannot import torch"):
    benchmark.run_grid([_TINY._replace(algorithm="nope")],
                       [benchmark.parse_mode("tuned")], peer_python=no_torch)


def test_binary_names_the_flag_when_torch_is_missing(no_torch, tmp_path):
  cmd = [sys.executable, str(_ROOT / "experiments" / "benchmark.py"),
         f"--peer_python={no_torch}", f"--output_dir={tmp_path / 'out'}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                        check=False)
  assert proc.returncode == 1
  assert "--peer_python" in proc.stderr and "No module named 'torch'" in (
      proc.stderr)
  assert not (tmp_path / "out").exists()


def test_the_library_never_imports_torch():
  # Only the peer script, which runs in its own interpreter, imports it.
  for path in (_ROOT / "metalearn").rglob("*.py"):
    if path.name == "torch_peer.py":
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom)
               else [])
      assert not any(n.split(".")[0] == "torch" for n in names), path
