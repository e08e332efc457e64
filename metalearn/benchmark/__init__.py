"""Meta-step throughput, compile time and memory: a plain step vs tuned.

Each row times one algorithm of :mod:`metalearn.algorithms` (``maml``,
``fomaml``, ``mamlpp`` = multi-step loss + learned per-step per-layer rates
+ per-step batch norm, ``mamlpp_first_order``, ``anil``) on synthetic tasks
sampled on the device (Omniglot-shaped 28x28x1 with conv-4 by default;
ResNet-12 on colour images with ``model="resnet12"``), run one of two ways:

* ``plain``: :mod:`metalearn.benchmark.plain`, a deliberately straightforward
  implementation (``jit`` + ``vmap`` over tasks, Python-loop inner loop,
  float32, XLA convolutions, one meta-step per dispatch, no remat, no
  donation) that shares no code with :mod:`metalearn.core`.
* ``tuned``: :func:`metalearn.step.make_meta_step` (``lax.scan`` over inner
  steps, sampling inside the step, donation; MAML/FOMAML run the query set
  once, after the last step) with the knobs of a mode spec
  ``tuned[+unroll][+remat][+bf16][+shard][+map][+mm|+xla][+everyq][+spcN]
  [+blockremat]``:
  unroll the scan, ``jax.checkpoint`` each inner step, bfloat16 compute
  (float32 master weights), split tasks over all devices, ``lax.map`` over
  tasks, shifted-matmul or XLA convolutions (default: the model's ``auto``),
  query set after every step, N meta-steps per dispatch, ``nn.remat`` per
  ResNet-12 block.

Both compute the same function (the same query losses, tasks and Adam
update), so ``speedup`` (tasks/s over the ``plain`` row of the same workload,
measured in the same run) compares implementations, not arithmetic. The
meta-step is the algorithm's own (a second-order MAML++ step stays second
order: derivative-order annealing is a training schedule, not timed here).
Memory: ``xla_temp_bytes`` is XLA's scratch for the step program per device
(exact per row); ``peak_bytes`` is the runtime peak,
``device_peak_bytes_in_use`` on GPU or the process's peak RSS on CPU
(``process_peak_rss``): both are peaks over the life of a process, so run
rows with ``isolate=True`` (one process each) to attribute them.

Modules: :mod:`~metalearn.benchmark.workloads` (what and how: workloads,
modes, synthetic data), :mod:`~metalearn.benchmark.measure` (compile, time
one row), :mod:`~metalearn.benchmark.grid` (run a grid, the peer beside
it), :mod:`~metalearn.benchmark.interleave` (every mode of a workload in
one process, timed chunk by chunk in turn),
:mod:`~metalearn.benchmark.results` (rows, speedups, tables, files). :mod:`~metalearn.benchmark.memory` (``experiments/memory_vs_steps.py``)
compiles the training meta-step at several inner steps and compares XLA's
temp bytes, MAML's against iMAML's; nothing runs or is timed.
:mod:`~metalearn.benchmark.peer` times the PyTorch peer
(:mod:`~metalearn.benchmark.torch_peer`, a standalone script that only a
subprocess with torch runs; metalearn never imports torch) on the same
workloads in the same run: ``vs_peer`` is metalearn / PyTorch.
"""

from metalearn.benchmark.interleave import measure_interleaved
from metalearn.benchmark.measure import Timing
from metalearn.benchmark.measure import measure
from metalearn.benchmark.grid import run_grid
from metalearn.benchmark.peer import check_peer_python
from metalearn.benchmark.peer import measure_peer
from metalearn.benchmark.peer import peer_command
from metalearn.benchmark.results import Row
from metalearn.benchmark.results import markdown_table
from metalearn.benchmark.results import read_results
from metalearn.benchmark.results import with_speedups
from metalearn.benchmark.results import write_results
from metalearn.benchmark.workloads import Mode
from metalearn.benchmark.workloads import Workload
from metalearn.benchmark.workloads import grid
from metalearn.benchmark.workloads import make_problem
from metalearn.benchmark.workloads import parse_mode
from metalearn.benchmark.workloads import synthetic_dataset
from metalearn.benchmark.workloads import synthetic_task_fn
