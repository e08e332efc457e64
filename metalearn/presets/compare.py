"""The comparison: MAML, FOMAML, MAML++ and first-order MAML++ side by side.

Run (the README's first command runs the default):
  python experiments/compare.py                 # cpu without an accelerator, else full
  python experiments/compare.py --config=experiments/configs/compare.py:full
  python experiments/compare.py --config=experiments/configs/compare.py:cpu \
      --config.meta_steps=200 --algorithms=maml,fomaml

``full``: the write-up's protocol. Omniglot 5-way 1-shot, TFDS train
(background) / test (evaluation) split, a fixed pool of 200 training tasks
with 15 query images per class, 50 passes in meta-batches of 8 (1,250
meta-steps), inner SGD lr 0.01 x 5 steps with batch-norm affines adapted,
outer Adam lr 0.001, conv-4 with 64 filters. 600 test tasks rather than the
write-up's 100, so that the 95% CIs can separate the algorithms.

``cpu``: sized for a 2-core CPU (the command finishes in minutes). The
write-up's inner rate of 0.01 over 5 steps cannot learn in that budget, so it
uses Finn et al.'s Omniglot setup instead: fresh tasks every meta-step from
the 'vinyals' split with rotations, conv-4 with 24 filters, meta-batch 8, 1
query image per class, and an outer rate of 0.003 annealed to 0.0001 over
1,300 meta-steps (the papers' constant 0.001 learns too slowly at this size,
and MAML's accuracy at 1,100 steps sat at about 90% over seeds:
docs/benchmarks.md); 400 test tasks. Three inner steps at 0.2 (5 at test),
so that MAML++'s multi-step loss weighs a trajectory: it anneals to the last
step over the first 3 epochs, and MAML++ runs first order over the same 3
epochs (derivative-order annealing), so it compiles two phase programs.

Measured: docs/benchmarks.md ("The comparison").
"""

import jax

from metalearn import configs


def full():
  c = configs.base()
  c.dataset = "tfds"
  c.rotate = False
  c.n_query = c.eval_n_query = 15
  c.train_pool = 200
  c.filters = 64
  c.adapt_norm = True
  c.inner_steps = c.eval_inner_steps = 5
  c.inner_lr = 0.01
  c.msl_epochs = 10
  c.first_order_epochs = 0
  c.meta_batch_size = 8
  c.steps_per_epoch = 25     # one pass over the pool
  c.meta_steps = 50 * 25
  c.outer_lr = 1e-3
  c.steps_per_call = 25
  c.eval_every = 0
  c.val_tasks = 0
  c.test_tasks = 600
  c.checkpoint_every = 250
  return c


def cpu():
  c = full()
  c.dataset = "vinyals"
  c.rotate = True
  c.n_query = 1
  c.train_pool = 0
  c.filters = 24
  c.adapt_norm = False
  c.inner_steps, c.inner_lr = 3, 0.2
  c.outer_lr = 3e-3
  c.lr_schedule, c.outer_lr_min = "cosine", 1e-4
  c.meta_steps = 1300
  c.steps_per_epoch = 100
  c.msl_epochs = c.first_order_epochs = 3
  c.steps_per_call = 50
  c.test_tasks = 400
  c.checkpoint_every = 500
  # Compiles the meta-steps 8 to 13% faster at this size, at the same speed
  # (docs/benchmarks.md, "LLVM's level for the steps of small models").
  c.cpu_llvm_level = 1
  c.description = ("CPU size; differs from the full protocol (--config="
                   "experiments/configs/compare.py:full): "
                   + "; ".join(configs.differences(c, full())))
  return c


def get_config(size: str = "auto"):
  if size == "auto":
    size = "cpu" if jax.default_backend() == "cpu" else "full"
  if size not in ("cpu", "full"):
    raise ValueError(f"config setting {size!r} is unknown; valid: auto, cpu, "
                     "full.")
  return cpu() if size == "cpu" else full()
