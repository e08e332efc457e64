r"""MAML and FOMAML in PyTorch, written the way a PyTorch user writes them.

The peer that ``experiments/benchmark.py --peer_python=...`` times beside
metalearn, at the same shapes, in the same run. A standalone script: it
imports torch and the standard library only (never metalearn, JAX or
NumPy) and runs under another interpreter, one that has torch, in a
subprocess of the benchmark (:mod:`metalearn.benchmark.peer`), so torch
never becomes a dependency of metalearn.

What it computes is a benchmark workload
(:class:`metalearn.benchmark.workloads.Workload`): conv-4 (``num_blocks`` x
[3x3 convolution with ``filters`` channels and no bias, transductive batch
norm, ReLU, 2x2 max-pool], then a dense head), lecun-normal kernels, on
synthetic tasks drawn each meta-step from a binary uint8 dataset of 100
classes of 20 images (0..255 colour with ``--channels=3``), the same inner
and outer learning rates, Adam outside. The loop is the usual one: a Python
loop over the tasks; per task, the inner SGD steps with
``torch.autograd.grad(create_graph=not first_order)``, then the query loss
after the last step, divided by the meta-batch size, ``backward()``; one
``optimizer.step()`` per meta-step.

Timing as :mod:`metalearn.benchmark.measure`: ``warmup`` meta-steps, then
``chunks`` timed chunks of ``steps_per_chunk`` meta-steps; tasks/s is the
meta-batch size over the median seconds per meta-step. Prints one JSON line.
With ``--profile`` it then profiles ``steps_per_chunk`` more meta-steps
(after one more under the profiler as its warm-up) with ``torch.profiler``
and adds where their time went, per meta-step: each op's self CPU time in a
few buckets (:data:`BUCKETS`, ``profile_s``; see :func:`bucket`), their
total and the wall time (``experiments/profile_step.py`` prints them beside
metalearn's parts).

  python3 -m venv /tmp/torch-peer
  /tmp/torch-peer/bin/pip install "torch==2.13.0+cpu"
  /tmp/torch-peer/bin/python metalearn/benchmark/torch_peer.py \
      --algorithm=maml --meta_batch_size=4 --inner_steps=5 --filters=32
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

ALGORITHMS = ("maml", "fomaml")
# Where --profile puts each op's self CPU time (see bucket()).
BUCKETS = ("conv_forward", "conv_backward", "batch_norm", "matmul",
           "pool_activation", "optimizer", "other")


def init_params(n_way, *, filters, num_blocks, channels, image_size,
                generator, dtype=torch.float32):
  """Conv-4 parameters as a flat list of leaf tensors that require grad.

  Per block: the kernel [filters, C_in, 3, 3] (no bias: batch norm follows),
  the batch norm's scale (ones) and offset (zeros), [filters] each; then the
  head's kernel [n_way, features] and bias [n_way] (zeros). Kernels are
  lecun-normal (truncated, variance 1 / fan_in), like flax's defaults.
  """
  def lecun(shape, fan_in):
    std = math.sqrt(1.0 / fan_in) / .87962566103423978
    return torch.nn.init.trunc_normal_(torch.empty(shape, dtype=dtype),
                                       std=std, a=-2 * std, b=2 * std,
                                       generator=generator)
  params, c_in, side = [], channels, image_size
  for _ in range(num_blocks):
    params += [lecun((filters, c_in, 3, 3), 9 * c_in),
               torch.ones(filters, dtype=dtype),
               torch.zeros(filters, dtype=dtype)]
    c_in, side = filters, side // 2
  features = filters * side * side
  params += [lecun((n_way, features), features),
             torch.zeros(n_way, dtype=dtype)]
  return [p.requires_grad_() for p in params]


def forward(params, x):
  """Conv-4 logits. x [B, C, H, W] -> [B, n_way]."""
  *blocks, kernel, bias = params
  for i in range(0, len(blocks), 3):
    conv, scale, offset = blocks[i:i + 3]
    x = F.conv2d(x, conv, padding=1)
    # Transductive: the statistics of this batch, no running averages.
    x = F.batch_norm(x, None, None, scale, offset, training=True, eps=1e-5)
    x = F.max_pool2d(F.relu(x), 2)
  return F.linear(x.flatten(1), kernel, bias)


def adapt(params, x, y, *, inner_steps, inner_lr, first_order):
  """The inner loop: ``inner_steps`` SGD steps on the support set.

  Second order (``first_order=False``) keeps the graph of every inner
  gradient, so a backward pass from the result reaches ``params`` through
  them; first order detaches the gradients.
  """
  for _ in range(inner_steps):
    loss = F.cross_entropy(forward(params, x), y)
    grads = torch.autograd.grad(loss, params, create_graph=not first_order)
    params = [w - inner_lr * g for w, g in zip(params, grads)]
  return params


def task_loss(params, task, *, inner_steps, inner_lr, first_order):
  """The query loss of one task after adaptation on its support set."""
  support_x, support_y, query_x, query_y = task
  fast = adapt(params, support_x, support_y, inner_steps=inner_steps,
               inner_lr=inner_lr, first_order=first_order)
  return F.cross_entropy(forward(fast, query_x), query_y)


def meta_step(params, optimizer, tasks, **inner):
  """One meta-step: the mean query loss over ``tasks``, one optimizer step.

  Each task's loss (over the meta-batch size) is back-propagated on its own,
  so the graph of one task is freed before the next is built.

  Returns:
    The meta-loss (a float).
  """
  optimizer.zero_grad()
  total = 0.0
  for task in tasks:
    loss = task_loss(params, task, **inner) / len(tasks)
    loss.backward()
    total += loss.item()
  optimizer.step()
  return total


def synthetic_dataset(generator, *, image_size, channels, num_classes=100,
                      samples_per_class=20):
  """Random images [classes, samples, channels, H, W], float32.

  Binary {0, 1} with one channel (Omniglot-like), else 0..255 scaled by
  1/255 (mini-ImageNet-like), as in the benchmark's synthetic data.
  """
  shape = (num_classes, samples_per_class, channels, image_size, image_size)
  if channels == 1:
    return torch.randint(0, 2, shape, generator=generator).float()
  return torch.randint(0, 256, shape, generator=generator).float() / 255


def sample_tasks(data, generator, *, n_way, k_shot, n_query,
                 meta_batch_size):
  """``meta_batch_size`` tasks as (support_x, support_y, query_x, query_y).

  Per task: ``n_way`` distinct classes, ``k_shot + n_query`` distinct images
  of each (support and query disjoint), labels grouped by class.
  """
  tasks = []
  for _ in range(meta_batch_size):
    classes = torch.randperm(data.shape[0], generator=generator)[:n_way]
    draws = torch.argsort(torch.rand(n_way, data.shape[1],
                                     generator=generator), dim=1)
    images = data[classes[:, None], draws[:, :k_shot + n_query]]
    labels = torch.arange(n_way)
    tasks.append((images[:, :k_shot].flatten(0, 1),
                  labels.repeat_interleave(k_shot),
                  images[:, k_shot:].flatten(0, 1),
                  labels.repeat_interleave(n_query)))
  return tasks


def _percentile(values, q):
  """Linear interpolation between the closest ranks, as NumPy's default."""
  ordered = sorted(values)
  pos = (len(ordered) - 1) * q / 100
  low = math.floor(pos)
  high = min(low + 1, len(ordered) - 1)
  return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def make_step(args):
  """``step() -> meta-loss``: one meta-step on fresh tasks, with the
  parameters, Adam and data of ``args``'s workload built here."""
  torch.manual_seed(args.seed)
  generator = torch.Generator().manual_seed(args.seed)
  params = init_params(args.n_way, filters=args.filters,
                       num_blocks=args.num_blocks, channels=args.channels,
                       image_size=args.image_size, generator=generator)
  optimizer = torch.optim.Adam(params, lr=args.outer_lr)
  data = synthetic_dataset(generator, image_size=args.image_size,
                           channels=args.channels)
  inner = dict(inner_steps=args.inner_steps, inner_lr=args.inner_lr,
               first_order=args.algorithm == "fomaml")

  def step():
    tasks = sample_tasks(data, generator, n_way=args.n_way,
                         k_shot=args.k_shot, n_query=args.n_query,
                         meta_batch_size=args.meta_batch_size)
    return meta_step(params, optimizer, tasks, **inner)

  return step


def bucket(root):
  """The bucket of time spent under a top-level profiled event ``root``.

  ``root`` is an autograd node of a backward pass (``autograd::engine::
  evaluate_function: ConvolutionBackward0``; double backward included, as
  ``ConvolutionBackwardBackward0``), an optimizer call
  (``Optimizer.step#Adam.step``), a forward op (``aten::conv2d``) or the
  meta-step itself (``ProfilerStep#3``: Python between ops, ``other``).
  Returns one of :data:`BUCKETS`.
  """
  prefix = "autograd::engine::evaluate_function:"
  backward = root.startswith(prefix)
  name = (root[len(prefix):] if backward else root).strip().lower()
  if name.startswith("optimizer."):
    return "optimizer"
  if "conv" in name:
    return "conv_backward" if backward else "conv_forward"
  if "batch_norm" in name or "batchnorm" in name:
    return "batch_norm"
  if any(k in name for k in ("addmm", "linear", "matmul", "mm")):
    return "matmul"
  if any(k in name for k in ("pool", "relu", "threshold")):
    return "pool_activation"
  return "other"


def profile(step, steps):
  """Runs one meta-step, then ``steps`` profiled ones, under
  ``torch.profiler``.

  Every op's self CPU time goes to the bucket (:data:`BUCKETS`) of its
  outermost event within the meta-step (:func:`bucket`); the time of the
  step outside any op (Python) goes to ``other``. Returns seconds per
  meta-step: ``profile_s`` by bucket, ``profile_total_s`` and the wall
  time ``profile_wall_s``.
  """
  seconds = dict.fromkeys(BUCKETS, 0.0)

  def add(prof):
    for event in prof.events():
      root = event
      while (root.cpu_parent is not None
             and not root.cpu_parent.name.startswith("ProfilerStep")):
        root = root.cpu_parent
      seconds[bucket(root.name)] += event.self_cpu_time_total / 1e6 / steps

  with torch.profiler.profile(
      activities=[torch.profiler.ProfilerActivity.CPU],
      schedule=torch.profiler.schedule(wait=0, warmup=1, active=steps),
      on_trace_ready=add) as prof:
    step()
    prof.step()
    wall = 0.0
    for _ in range(steps):
      start = time.perf_counter()
      step()
      wall += (time.perf_counter() - start) / steps
      prof.step()  # After the last one, the profile is read (add).
  return {"profile_steps": steps, "profile_s": seconds,
          "profile_total_s": sum(seconds.values()), "profile_wall_s": wall}


def measure(args):
  """Warms up, times the chunks, returns the result as a dict; with
  ``args.profile``, then profiles ``args.steps_per_chunk`` meta-steps
  (:func:`profile`)."""
  step = make_step(args)
  for _ in range(max(1, args.warmup)):
    loss = step()
  times = []
  for _ in range(args.chunks):
    start = time.perf_counter()
    for _ in range(args.steps_per_chunk):
      loss = step()
    times.append((time.perf_counter() - start) / args.steps_per_chunk)
  p0, p25, p50, p75, p100 = (_percentile(times, q)
                             for q in (0, 25, 50, 75, 100))
  result = {"peer": "torch-loop", "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "algorithm": args.algorithm,
            "meta_batch_size": args.meta_batch_size,
            "tasks_per_s": args.meta_batch_size / p50, "step_s_median": p50,
            "step_s_p25": p25, "step_s_p75": p75, "step_s_min": p0,
            "step_s_max": p100, "final_loss": loss, "chunks": args.chunks,
            "steps_per_chunk": args.steps_per_chunk}
  if args.profile:
    result.update(profile(step, args.steps_per_chunk))
  return result


def parse_args(argv=None):
  """The workload and timing flags (names as in ``experiments/benchmark.py``,
  one value each)."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--algorithm", choices=ALGORITHMS, default="maml")
  p.add_argument("--model", choices=("conv4",), default="conv4")
  for name, default in (("meta_batch_size", 4), ("n_way", 5), ("k_shot", 1),
                        ("n_query", 15), ("inner_steps", 1), ("filters", 64),
                        ("num_blocks", 4), ("image_size", 28),
                        ("channels", 1), ("warmup", 2), ("chunks", 5),
                        ("steps_per_chunk", 4), ("seed", 0)):
    p.add_argument(f"--{name}", type=int, default=default)
  p.add_argument("--inner_lr", type=float, default=0.1)
  p.add_argument("--outer_lr", type=float, default=1e-3)
  p.add_argument("--profile", action="store_true",
                 help="Then profile --steps_per_chunk meta-steps: self CPU "
                 "time per meta-step by op bucket (BUCKETS).")
  args = p.parse_args(argv)
  for name in ("meta_batch_size", "n_way", "k_shot", "n_query", "inner_steps",
               "filters", "num_blocks", "image_size", "channels", "chunks",
               "steps_per_chunk"):
    if getattr(args, name) < 1:
      p.error(f"--{name} must be >= 1, got {getattr(args, name)}.")
  if args.k_shot + args.n_query > 20:
    p.error("--k_shot + --n_query must be <= 20 (images per class).")
  return args


if __name__ == "__main__":
  print(json.dumps(measure(parse_args())), flush=True)
