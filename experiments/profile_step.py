r"""Where a meta-step's time goes, part by part, beside the PyTorch peer's.

Times the parts of the library's meta-step (task sampling, forward, one
inner gradient, the inner loop, the meta-loss, the meta-gradient, first
and second order, the outer update, the whole step) as separate compiled
programs (``metalearn.benchmark.breakdown``), each with XLA's FLOPs as a
share of a float32 matmul's FLOP/s in the same run; with ``--peer_python``,
profiles the PyTorch peer (``metalearn/benchmark/torch_peer.py --profile``)
on the same workload and puts its self CPU time by op bucket beside them.
docs/performance.md ("Where a meta-step's time goes") explains the
method; the measured tables are in docs/benchmarks.md.

The two workloads of "Measuring against PyTorch" (docs/performance.md),
on an otherwise idle machine (about 6 minutes on 2 CPU cores):

  python experiments/profile_step.py --algorithms=maml,fomaml \
      --meta_batch_sizes=4 --n_query=15 --inner_steps=5 --filters=32 \
      --peer_python=/tmp/torch-peer/bin/python --output_dir=runs/profile
  python experiments/profile_step.py --algorithms=maml \
      --meta_batch_sizes=32 --n_query=1 --inner_steps=1 --filters=64 \
      --peer_python=/tmp/torch-peer/bin/python --output_dir=runs/profile \
      --append

Writes ``results.jsonl`` (one line per workload and mode) and
``results.md`` (every line's tables) into ``--output_dir``; prints them.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from metalearn import algorithms
from metalearn import host_memory
from metalearn import benchmark
from metalearn import profiling
from metalearn.benchmark import breakdown
from metalearn.benchmark import throughput

_ALGORITHMS = flags.DEFINE_list(
    "algorithms", ["maml"], f"Any of {', '.join(algorithms.ALGORITHMS)} "
    "that the benchmark times.")
_META_BATCH_SIZES = flags.DEFINE_list("meta_batch_sizes", ["4"],
                                      "Tasks per meta-step.")
_N_WAY = flags.DEFINE_list("n_way", ["5"], "Classes per task.")
_K_SHOT = flags.DEFINE_list("k_shot", ["1"], "Support examples per class.")
_N_QUERY = flags.DEFINE_list("n_query", ["15"], "Query examples per class.")
_INNER_STEPS = flags.DEFINE_list("inner_steps", ["1"], "Inner SGD steps.")
_FILTERS = flags.DEFINE_integer("filters", 16, "Conv-4 channels.")
_NUM_BLOCKS = flags.DEFINE_integer("num_blocks", 4, "Conv blocks.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 28,
                                   "Height and width of the square images.")
_CHANNELS = flags.DEFINE_integer("channels", 1,
                                 "1: binary images; 3: colour uint8 images.")
_MODES = flags.DEFINE_list("modes", ["tuned"], "tuned, with knobs of "
                           f"{', '.join(breakdown.KNOBS)}: tuned+remat, ...")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Calls of each part (meta-steps "
                               "of the peer) before timing.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls of each part.")
_PEER_PYTHON = flags.DEFINE_string(
    "peer_python", "", "A Python interpreter that has torch: each workload's "
    "PyTorch peer is profiled too. Empty: no peer.")
_PEER_STEPS = flags.DEFINE_integer(
    "peer_steps", 3, "Meta-steps the peer times, then as many it profiles.")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", 2048,
                                    "Side of the reference float32 matmul.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of parameters, data, tasks.")
_APPEND = flags.DEFINE_boolean("append", False,
                               "Append to an existing results.jsonl.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/profile_step",
                                  "Where results.jsonl and results.md go.")

LABELS = {
    "sample": "(a) task sampling",
    "forward": "(b) forward, support + query",
    "inner_grad": "(c) one inner gradient",
    "inner_loop": "(d) inner loop (adaptation)",
    "meta_loss": "(e) meta-loss forward",
    "meta_grad": "(f) meta-gradient",
    "meta_grad_first_order": "(f') meta-gradient, first order",
    "outer_update": "(g) outer Adam update",
    "step": "(h) whole meta-step",
    "backward": "(f) - (e): backward through adaptation",
    "backward_first_order": "(f') - (e): first-order backward",
    "step_rest": "(h) - (a) - (f) - (g): rest of the step",
}


def _cell(value, fmt: str) -> str:
  return "-" if value is None else fmt.format(value)


def parts_table(record: dict) -> str:
  """metalearn's parts: ms per meta-step, share of the whole step, GFLOP,
  GFLOP/s and % of the run's matmul FLOP/s."""
  parts = record["parts"]
  step = next((p["seconds"] for p in parts if p["name"] == "step"), None)
  lines = ["| part | ms per meta-step | share of the step | GFLOP | "
           "GFLOP/s | % of matmul rate |", "|---|---:|---:|---:|---:|---:|"]
  for p in parts:
    s, flops = p["seconds"], p["flops"]
    rate = flops / s if flops and s > 0 else None
    cells = [f"{s * 1e3:.1f}", _cell(step and s / step * 100, "{:.0f}%"),
             _cell(flops and flops / 1e9, "{:.3f}"),
             _cell(rate and rate / 1e9, "{:.1f}"),
             _cell(rate and rate / record["matmul_flops_per_s"] * 100,
                   "{:.1f}")]
    lines.append(f"| {LABELS.get(p['name'], p['name'])} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines)


def peer_table(peer: dict) -> str:
  """The peer's self CPU time per meta-step and share of all ops' time, by
  op bucket; then the totals and its wall time with and without profiler."""
  total = peer["profile_total_s"]
  lines = ["| PyTorch peer: ops by bucket | ms per meta-step | share of "
           "ops |", "|---|---:|---:|"]
  lines += [f"| {name} | {s * 1e3:.1f} | {s / total * 100:.0f}% |"
            for name, s in peer["profile_s"].items()]
  return "\n".join(lines + [
      f"| all ops (self CPU time) | {total * 1e3:.1f} | 100% |",
      f"| wall, profiled | {peer['profile_wall_s'] * 1e3:.1f} | |",
      f"| wall, unprofiled (median) | {peer['step_s_median'] * 1e3:.1f} | |"])


def report(records: list) -> str:
  """results.md: each record's heading, parts and peer tables."""
  env = records[-1]["environment"]
  text = ["# Where a meta-step's time goes", "",
          f"Machine: {env['cpu']} x {env['cpu_count']} cores, "
          f"{env['device']}; jax {env['jax']}; commit {env['commit']}.", ""]
  for r in records:
    w = r["workload"]
    blocks = "" if w["num_blocks"] == 4 else f" ({w['num_blocks']} blocks)"
    text += [f"## {w['algorithm']}, conv-4-{w['filters']}{blocks}, "
             f"{w['n_way']}-way {w['k_shot']}-shot, "
             f"{w['n_query']} query/class, "
             f"{w['inner_steps']} inner step(s), meta-batch "
             f"{w['meta_batch_size']}, {r['mode']}", "",
             f"Command: `{r['command']}`; matmul "
             f"{r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s; load average at "
             f"start {r['environment']['load_average_at_start']}.", "",
             parts_table(r), ""]
    if r["peer"]:
      text += [f"Peer: torch {r['peer']['torch_version']}, "
               f"{r['peer']['threads']} threads.", "", peer_table(r["peer"]),
               ""]
    elif r["peer_error"]:
      text += [f"Peer error: {r['peer_error']}", ""]
  return "\n".join(text)


def main(argv):
  del argv
  ints = lambda values: [int(v) for v in values]  # noqa: E731
  workloads = benchmark.grid(
      _ALGORITHMS.value, ints(_META_BATCH_SIZES.value), ints(_N_WAY.value),
      ints(_K_SHOT.value), ints(_N_QUERY.value), ints(_INNER_STEPS.value),
      filters=_FILTERS.value, num_blocks=_NUM_BLOCKS.value,
      image_size=_IMAGE_SIZE.value, channels=_CHANNELS.value)
  for mode in _MODES.value:
    breakdown.check_mode(mode)
  if _PEER_PYTHON.value:
    try:
      print("PyTorch peer: torch",
            benchmark.check_peer_python(_PEER_PYTHON.value))
    except ValueError as e:
      sys.exit(f"error: {e}")
  out = Path(_OUTPUT_DIR.value)
  out.mkdir(parents=True, exist_ok=True)
  path = out / "results.jsonl"
  if not _APPEND.value:
    path.write_text("")
  env = profiling.environment()
  matmul = throughput.matmul_flops_per_s(_MATMUL_SIZE.value)
  print(f"matmul: {matmul / 1e9:.1f} GFLOP/s")
  for w in workloads:
    for mode in _MODES.value:
      b = breakdown.measure(w, mode, warmup=_WARMUP.value,
                            repeats=_REPEATS.value, seed=_SEED.value,
                            matmul_flops_per_s=matmul, log=print)
      record = {"workload": w._asdict(), "mode": mode,
                "parts": [p._asdict() for p in b.parts],
                "matmul_flops_per_s": matmul, "peer": None,
                "peer_error": None, "command": " ".join(sys.argv),
                "environment": env}
      if _PEER_PYTHON.value:
        try:
          record["peer"] = breakdown.profile_peer(
              _PEER_PYTHON.value, w, warmup=_WARMUP.value,
              steps=_PEER_STEPS.value, seed=_SEED.value)
        except (RuntimeError, ValueError) as e:
          record["peer_error"] = str(e)[:300]
      with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
  records = [json.loads(line) for line in path.read_text().splitlines()]
  (out / "results.md").write_text(report(records))
  print(report(records))


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()
  app.run(main)
