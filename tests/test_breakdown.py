"""The meta-step breakdown and its binary, and the peer's ``--profile``.

One tiny workload runs for real, through ``experiments/profile_step.py``
with a fake peer interpreter (CI has no torch, as in tests/test_peer.py);
the real peer's profile is checked where torch is importable.
"""

import importlib.util
import json
import pathlib
import stat
import subprocess
import sys

import pytest

from metalearn import benchmark
from metalearn.benchmark import breakdown
from metalearn.benchmark import peer
from metalearn.benchmark import throughput
from tests import helpers

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_TINY = benchmark.Workload("maml", meta_batch_size=2, n_way=2, k_shot=1,
                           n_query=1, inner_steps=2, filters=4, num_blocks=1,
                           image_size=8)
_MEASURED = ("sample", "forward", "inner_grad", "inner_loop", "meta_loss",
             "meta_grad", "meta_grad_first_order", "outer_update", "step")
_DERIVED = ("backward", "backward_first_order", "step_rest")

# After the shared head: prints noise, then a result line with a profile
# when asked for one.
_FAKE = helpers.FAKE_PEER_HEAD + """if "--algorithm=fomaml" in sys.argv:
  sys.exit("torch_peer.py: error: out of memory")
print("a warning on stdout")
result = {{"peer": "fake-loop", "torch_version": "9.9.9+fake", "threads": 1,
          "tasks_per_s": 4.0, "step_s_median": 0.5}}
if "--profile" in sys.argv:
  result.update(profile_steps=2, profile_total_s=0.4, profile_wall_s=0.41,
                profile_s={{"conv_forward": 0.1, "conv_backward": 0.2,
                           "batch_norm": 0.0, "matmul": 0.0,
                           "pool_activation": 0.0, "optimizer": 0.0,
                           "other": 0.1}})
print(json.dumps(result))
"""


@pytest.fixture
def fake_peer(tmp_path):
  log = tmp_path / "argv.jsonl"
  python = tmp_path / "fake_python"
  python.write_text(_FAKE.format(python=sys.executable, log=str(log)))
  python.chmod(python.stat().st_mode | stat.S_IXUSR)
  return str(python), log


def test_binary_times_every_part_beside_the_peer(fake_peer, tmp_path):
  python, log = fake_peer
  out = tmp_path / "out"
  cmd = [sys.executable, str(_ROOT / "experiments" / "profile_step.py"),
         "--algorithms=maml", "--meta_batch_sizes=2", "--n_way=2",
         "--n_query=1", "--inner_steps=2", "--filters=4", "--num_blocks=1",
         "--image_size=8", "--warmup=0", "--repeats=1", "--matmul_size=128",
         "--peer_steps=2", f"--peer_python={python}", f"--output_dir={out}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (record,) = [json.loads(line) for line in
               (out / "results.jsonl").read_text().splitlines()]
  assert record["workload"] == json.loads(json.dumps(_TINY._asdict()))
  assert record["mode"] == "tuned"
  parts = {p["name"]: p for p in record["parts"]}
  assert tuple(parts) == _MEASURED + _DERIVED
  for name in _MEASURED:
    assert parts[name]["seconds"] > 0 and parts[name]["compile_s"] >= 0, name
    assert parts[name]["flops"] is not None, name
  assert parts["meta_grad"]["flops"] > parts["meta_loss"]["flops"] > 0
  assert parts["backward"]["seconds"] == pytest.approx(
      parts["meta_grad"]["seconds"] - parts["meta_loss"]["seconds"])
  assert record["matmul_flops_per_s"] > 0 and record["peer_error"] is None
  assert record["peer"]["profile_s"]["conv_backward"] == 0.2
  (argv,) = [json.loads(line) for line in log.read_text().splitlines()]
  assert argv[0] == peer.SCRIPT and argv[-1] == "--profile"
  assert "--steps_per_chunk=2" in argv and "--inner_steps=2" in argv
  md = (out / "results.md").read_text()
  assert md in proc.stdout
  assert "| (h) whole meta-step |" in md and "| 100% |" in md
  assert "| conv_backward | 200.0 | 50% |" in md
  assert "| wall, unprofiled (median) | 500.0 | |" in md


def test_a_failing_peer_is_an_error_not_a_crash(fake_peer):
  python, _ = fake_peer
  result = breakdown.profile_peer(python, _TINY, steps=2)
  assert result["profile_total_s"] == 0.4
  with pytest.raises(RuntimeError, match="out of memory"):
    breakdown.profile_peer(python, _TINY._replace(algorithm="fomaml"))


def test_a_rolled_inner_loop_is_counted_unrolled():
  rolled = {p.name: p for p in breakdown.programs(_TINY)}
  twins = {p.name: p for p in breakdown.programs(_TINY, "tuned+unroll")}
  loop = rolled["inner_loop"]
  once = throughput.compiled_flops(loop.fn.lower(*loop.args).compile())
  # Cost analysis counts a rolled loop's body once: two steps, about twice.
  assert breakdown.unrolled_flops(loop, twins["inner_loop"]) > 1.5 * once
  assert breakdown.unrolled_flops(rolled["forward"], twins["forward"]) is None


def test_differences_of_measured_parts():
  parts = (breakdown.Part("meta_loss", 1.0, 10.0),
           breakdown.Part("meta_grad", 3.0, 30.0),
           breakdown.Part("sample", 0.5, None))
  derived = breakdown.with_differences(parts)[len(parts):]
  # Only the backward: the first-order gradient and the step are missing.
  assert derived == (breakdown.Part("backward", 2.0, 20.0, derived=True),)


def test_modes_that_change_a_part_are_refused():
  assert breakdown.check_mode("tuned+remat+mm").remat
  for mode in ("plain", "tuned+bf16", "tuned+spc4", "tuned+map"):
    with pytest.raises(ValueError, match="tuned"):
      breakdown.check_mode(mode)


def test_the_real_peer_profiles_by_bucket():
  pytest.importorskip("torch")
  path = _ROOT / "metalearn" / "benchmark" / "torch_peer.py"
  spec = importlib.util.spec_from_file_location("torch_peer", path)
  torch_peer = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(torch_peer)
  assert [torch_peer.bucket(n) for n in (
      "aten::conv2d",
      "autograd::engine::evaluate_function: ConvolutionBackwardBackward0",
      "autograd::engine::evaluate_function: NativeBatchNormBackward0",
      "aten::linear", "autograd::engine::evaluate_function: MmBackward0",
      "aten::max_pool2d", "Optimizer.step#Adam.step", "aten::sub",
      "ProfilerStep#2")] == [
          "conv_forward", "conv_backward", "batch_norm", "matmul", "matmul",
          "pool_activation", "optimizer", "other", "other"]
  args = torch_peer.parse_args(
      ["--meta_batch_size=2", "--n_way=2", "--n_query=1", "--filters=2",
       "--num_blocks=1", "--image_size=8", "--inner_steps=2", "--warmup=1",
       "--chunks=1", "--steps_per_chunk=2", "--profile"])
  result = torch_peer.measure(args)
  assert tuple(result["profile_s"]) == torch_peer.BUCKETS
  assert result["profile_total_s"] == pytest.approx(
      sum(result["profile_s"].values()))
  assert result["profile_s"]["conv_backward"] > 0
  assert result["profile_s"]["conv_forward"] > 0
  # Python between ops is in "other": the ops' total is the step's wall.
  assert result["profile_total_s"] == pytest.approx(
      result["profile_wall_s"], rel=0.2)
