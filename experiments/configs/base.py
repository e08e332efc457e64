"""Defaults shared by every experiment config (MAML, Finn et al. 2017).

Not an experiment by itself: ``maml.py``, ``fomaml.py``, ``mamlpp.py`` and
``mamlpp_first_order.py`` import it and override a few fields.
"""

import ml_collections

# Finn et al. 2017, appendix A.1 (Omniglot).
# setting -> (n_way, k_shot, meta_batch_size, inner_steps, inner_lr, test_steps)
MAML_SETTINGS = {
    "5w1s": (5, 1, 32, 1, 0.4, 3),
    "5w5s": (5, 5, 32, 1, 0.4, 3),
    "20w1s": (20, 1, 16, 5, 0.1, 5),
    "20w5s": (20, 5, 16, 5, 0.1, 5),
}


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.algorithm = "maml"
  # Data.
  c.dataset = "vinyals"     # lake | vinyals | mamlpp (metalearn.data).
  c.cache_dir = ""          # "" -> $METALEARN_CACHE_DIR or ~/.cache/metalearn.
  c.omniglot_dir = ""       # "" -> $METALEARN_OMNIGLOT_DIR or ../shared/...
  c.rotate = True           # 90-degree rotations as new training classes.
  c.n_way = 5
  c.k_shot = 1
  c.n_query = 1             # query images per class while training.
  c.eval_n_query = 15       # query images per class for val/test tasks.
  c.train_pool = 0          # >0: train on a fixed pool of this many tasks.
  # Model.
  c.filters = 64
  c.per_step_bn = False     # MAML++: batch-norm affine per inner step.
  c.adapt_norm = False      # adapt batch-norm affines in the inner loop.
  c.inner_adapt = "all"     # all | head (ANIL: only the head adapts).
  # Inner loop.
  c.inner_steps = 1
  c.inner_lr = 0.4
  c.eval_inner_steps = 3
  c.learn_inner_lrs = False  # MAML++ LSLR.
  c.msl_epochs = 0           # MAML++ multi-step loss annealing (0 = off).
  c.first_order_epochs = 0   # MAML++ derivative-order annealing (0 = off).
  # Outer loop.
  c.meta_batch_size = 32
  c.num_steps = 60_000
  c.iters_per_epoch = 500
  c.outer_lr = 1e-3
  c.lr_schedule = "constant"  # constant | cosine
  c.outer_lr_min = 1e-5
  # Loop, evaluation, checkpoints.
  c.steps_per_call = 50
  c.eval_every = 5_000
  c.val_tasks = 200
  c.test_tasks = 600
  c.checkpoint_every = 5_000
  c.seed = 0
  c.max_train_seconds = 0.0  # >0: stop training after this many seconds.
  c.remat = False
  # Unrolled inner loop: on an H200 (MAML, 5 steps, meta-batch 32) the
  # rolled scan ran at 0.77x the unrolled speed (docs/benchmarks.md).
  c.unroll = True
  c.batching = "vmap"       # vmap | map (lax.map: less memory)
  c.conv_impl = "auto"      # auto | xla | matmul (auto: matmul on CPU)
  c.compute_dtype = "float32"  # float32 | bfloat16 (float32 parameters)
  c.progress = True
  return c


def apply_maml_setting(c: ml_collections.ConfigDict, setting: str
                      ) -> ml_collections.ConfigDict:
  """Sets ways, shots and Finn et al.'s per-setting hyperparameters."""
  if setting not in MAML_SETTINGS:
    raise ValueError(f"config setting {setting!r} is unknown; valid: "
                     f"{', '.join(MAML_SETTINGS)}")
  (c.n_way, c.k_shot, c.meta_batch_size, c.inner_steps, c.inner_lr,
   c.eval_inner_steps) = MAML_SETTINGS[setting]
  c.n_query = c.k_shot
  return c
