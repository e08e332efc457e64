"""Config building blocks: the fields every experiment has, and the papers'.

The experiment configs in ``experiments/configs/`` start from these and set a
few fields; they import only :mod:`metalearn`, so ``--config=FILE`` loads
them without any ``sys.path`` set-up. Field names are the project's one
vocabulary: ``inner_steps`` (inner SGD steps), ``meta_steps`` (meta-training
steps), ``steps_per_epoch``, ``train_pool``, ``meta_batch_size``.
"""

import ml_collections

from metalearn import algorithms

# Finn et al. 2017, appendix A.1 (Omniglot).
# setting -> (n_way, k_shot, meta_batch_size, inner_steps, inner_lr,
#             eval_inner_steps)
MAML_SETTINGS = {
    "5w1s": (5, 1, 32, 1, 0.4, 3),
    "5w5s": (5, 5, 32, 1, 0.4, 3),
    "20w1s": (20, 1, 16, 5, 0.1, 5),
    "20w5s": (20, 5, 16, 5, 0.1, 5),
}
# Antoniou et al. 2019: setting -> (n_way, k_shot).
MAMLPP_SETTINGS = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1),
                   "20w5s": (20, 5)}


def base() -> ml_collections.ConfigDict:
  """Every field, at MAML's Omniglot defaults (Finn et al. 2017, 5w1s)."""
  c = ml_collections.ConfigDict()
  c.algorithm = "maml"      # a name of metalearn.algorithms.ALGORITHMS.
  c.plugins = ()            # modules or .py files imported first: they may
                            # register datasets and models (docs/data.md).
  c.description = ""        # what this protocol is, for report headers.
  # Data.
  c.dataset = "vinyals"     # Omniglot tfds | lake | vinyals | mamlpp,
                            # mini_imagenet, folders, tfds_images,
                            # cifar_fs, fc100, cub, tiered_imagenet,
                            # synthetic or sinusoid (metalearn.data).
  c.data_dir = ""           # mini-ImageNet files ("" ->
                            # $METALEARN_MINI_IMAGENET_DIR; docs/data.md);
                            # the root of the class folders for "folders",
                            # "tiered_imagenet"; the folder holding
                            # CUB_200_2011/ for "cub"; TFDS's data dir for
                            # tfds_images, cifar_fs, fc100.
  c.image_size = 28         # folders, tfds_images, cifar_fs, fc100, cub,
                            # tiered_imagenet: images resized to this square.
  c.channels = 1            # the same: 1 (grayscale) or 3 (RGB).
  c.split_fractions = (0.64, 0.16, 0.2)  # "folders" without train/ val/
                            # test/ dirs, "tfds_images": (train, val, test)
                            # class fractions.
  c.tfds_name = ""          # "tfds_images": a TFDS dataset, e.g. "cifar10"
                            # (data_dir: TFDS's data dir).
  c.cache_dir = ""          # "" -> $METALEARN_CACHE_DIR or ~/.cache/metalearn.
  c.omniglot_dir = ""       # "" -> $METALEARN_OMNIGLOT_DIR, TFDS, download.
  c.rotate = True           # 90-degree rotations as new training classes.
  c.augment = ()            # training tasks only, in order: crop | flip |
                            # rotate (metalearn.data.augment).
  c.n_way = 5               # classes per training task (the most, and the
                            # head's width, when min_n_way is set).
  c.k_shot = 1              # support images per class (the most, when
                            # min_k_shot is set).
  c.n_query = 1             # query images per class while training.
  c.min_n_way = 0           # >0: each training task draws its way uniformly
                            # in [min_n_way, n_way] (metalearn.data.shapes).
  c.min_k_shot = 0          # >0: and its shot in [min_k_shot, k_shot].
  c.eval_n_way = 0          # classes of val/test tasks; 0: n_way. Above
                            # n_way each task starts from a prototype head.
  c.eval_k_shot = 0         # support images per class of val/test tasks;
                            # 0: k_shot.
  c.eval_n_query = 15       # query images per class for val/test tasks.
  c.train_pool = 0          # >0: train on a fixed pool of this many tasks.
  # Model and loss.
  c.model = "conv4"         # conv4 | resnet12 | mlp
  c.filters = 64            # conv4's channels.
  c.num_blocks = 4          # conv4's conv blocks.
  c.widths = (64, 160, 320, 640)  # resnet12's block widths.
  c.block_remat = False     # resnet12: recompute each block on the backward.
  c.hidden = (40, 40)       # mlp's hidden widths.
  c.activation = "relu"     # mlp's hidden activation: relu | tanh.
  c.loss = "cross_entropy"  # cross_entropy | mse (metalearn.objectives).
  c.adapt_norm = False      # adapt batch-norm affines in the inner loop.
  c.frozen = ()             # parameter path substrings never adapted in the
                            # inner loop (still meta-learned).
  # Inner loop.
  c.inner_steps = 1
  c.inner_lr = 0.4
  c.eval_inner_steps = 3
  # MAML++ (used by algorithms with plus_plus; see metalearn.algorithms).
  c.msl_epochs = 10         # multi-step loss annealing, in epochs.
  c.first_order_epochs = 0  # derivative-order annealing (second order only).
  c.fast_head = True        # head-only (ANIL): run the body once per task.
  c.inner_optimizer = "sgd"  # sgd (inner_lr) | adam (inner_adam_lr, beta1 0):
                             # metalearn.rules.INNER_UPDATES.
  c.inner_adam_lr = 1e-3
  # iMAML (algorithm imaml; metalearn.imaml).
  c.imaml_lambda = 1.0      # proximal strength: the inner loop minimises the
                            # support loss + lambda/2 ||phi - theta||^2.
  c.imaml_cg_steps = 5      # conjugate-gradient steps solving
                            # (I + H/lambda) v = query gradient.
  c.imaml_cg_damping = 10.0  # added to lambda in that system only: 0 is
                            # exact, larger nearer the query gradient (first
                            # order); 10 as Rajeswaran et al.'s code, which
                            # learns where the inner problem is not solved.
  # Outer loop.
  c.meta_batch_size = 32
  c.meta_steps = 60_000
  c.steps_per_epoch = 500
  c.outer_optimizer = "adam"  # adam | sgd
  c.outer_lr = 1e-3
  c.lr_schedule = "constant"  # constant | cosine | linear (to outer_lr_min)
  c.outer_lr_min = 1e-5
  # Loop, evaluation, checkpoints.
  c.steps_per_call = 50
  c.eval_every = 5_000      # validation (best checkpoint); 0: none.
  c.val_tasks = 200
  c.test_tasks = 600
  c.eval_chunk_size = 100   # test tasks per compiled evaluation call.
  c.ensemble_top_k = 1      # >1: keep this many best checkpoints and also
                            # test their ensemble (metalearn.ensemble).
  c.checkpoint_every = 5_000
  c.seed = 0
  c.max_train_seconds = 0.0  # >0: stop training after this many seconds.
  # Speed and memory (docs/performance.md).
  c.remat = False
  c.unroll = True
  c.batching = "vmap"       # vmap | map (lax.map: less memory)
  c.eval_batching = "auto"  # auto | vmap | map (auto: map on CPU)
  c.conv_impl = "auto"      # auto | xla | matmul | im2col | im2col_vjp |
                            # im2col_native | direct_native (auto:
                            # direct_native on CPU)
  c.tile_params = "auto"    # auto | on | off: one parameter copy per task
                            # (metalearn.task_copies; auto: on a CPU
                            # without XLA convolutions)
  c.compute_dtype = "float32"  # float32 | bfloat16 (float32 parameters)
  c.cpu_llvm_level = 3      # 0-3: LLVM's level for XLA's CPU kernels in the
                            # meta-step (3: XLA's default; 1 compiles faster,
                            # runs small models slower: docs/performance.md)
  c.compile_ahead = True    # compile later phases' meta-steps in the
                            # background while the first phase trains
  c.progress = True
  # Devices (docs/scaling.md): 0 = every device of every process; N = the
  # first N local devices. meta_batch_size must be a multiple of the count.
  c.devices = 0
  # Resuming a workdir with other training fields is refused unless this is
  # set (metalearn.fingerprint).
  c.allow_config_change = False
  return c


def for_algorithm(name: str,
                  config: ml_collections.ConfigDict | None = None
                 ) -> ml_collections.ConfigDict:
  """``config`` (default :func:`base`) running algorithm ``name``, with the
  fields its protocol sets (:attr:`metalearn.algorithms.Algorithm.defaults`)."""
  c = base() if config is None else config
  algorithm = algorithms.get(name)
  c.algorithm = algorithm.name
  for field, value in algorithm.defaults:
    c[field] = value
  return c


def _setting(table: dict, setting: str):
  if setting not in table:
    raise ValueError(f"config setting {setting!r} is unknown; valid: "
                     f"{', '.join(table)}.")
  return table[setting]


def maml(setting: str = "5w1s", algorithm: str = "maml"
        ) -> ml_collections.ConfigDict:
  """Finn et al. 2017's Omniglot setting for MAML (or FOMAML)."""
  c = for_algorithm(algorithm)
  (c.n_way, c.k_shot, c.meta_batch_size, c.inner_steps, c.inner_lr,
   c.eval_inner_steps) = _setting(MAML_SETTINGS, setting)
  c.n_query = c.k_shot
  return c


def mamlpp(setting: str = "5w1s", algorithm: str = "mamlpp"
          ) -> ml_collections.ConfigDict:
  """Antoniou et al. 2019's Omniglot setting for MAML++.

  100 epochs of 500 meta-steps, meta-batch 8, 5 inner steps with learned
  rates starting at 0.1, multi-step loss over 10 epochs, first order for
  the first 50 (second-order algorithms), cosine outer rate 1e-3 -> 1e-5,
  the 1150/50/423 split. The test also reports the ensemble of the 5
  checkpoints best on validation, as the paper's numbers are (the existing
  test fields stay the single best).
  """
  c = for_algorithm(algorithm)
  c.dataset = "mamlpp"
  c.n_way, c.k_shot = _setting(MAMLPP_SETTINGS, setting)
  c.n_query = c.k_shot
  c.meta_batch_size = 8
  c.inner_steps = c.eval_inner_steps = 5
  c.inner_lr = 0.1
  c.msl_epochs = 10
  c.first_order_epochs = 50
  c.steps_per_epoch = 500
  c.meta_steps = 100 * 500
  c.lr_schedule = "cosine"
  c.outer_lr, c.outer_lr_min = 1e-3, 1e-5
  c.eval_every = c.checkpoint_every = 2_500
  c.ensemble_top_k = 5  # the paper's test ensemble of the 5 best.
  return c


# Nichol et al. 2018, Omniglot: setting -> (n_way, k_shot).
REPTILE_SETTINGS = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1),
                    "20w5s": (20, 5)}


def reptile(setting: str = "5w1s") -> ml_collections.ConfigDict:
  """Nichol et al. 2018's Omniglot setting for Reptile.

  Meta-batch 5, 100,000 meta-steps, outer SGD with step size 1.0 annealed
  linearly to 0; 5 inner Adam steps (lr 0.001, beta1 0) on 10 examples per
  class ("train shots" 10: here ``k_shot`` + ``n_query``, which Reptile
  trains on together); 50 Adam steps on the support set at test time.
  Differs from the paper: every inner step uses the task's whole set
  instead of a mini-batch of 10, and batch norm is always transductive.
  """
  c = for_algorithm("reptile")  # inner Adam, outer SGD 1.0 -> 0 linear.
  c.n_way, c.k_shot = _setting(REPTILE_SETTINGS, setting)
  c.n_query = 10 - c.k_shot
  c.meta_batch_size = 5
  c.meta_steps = 100_000
  c.inner_steps, c.eval_inner_steps = 5, 50
  c.eval_every = c.checkpoint_every = 10_000
  return c


def metasgd(setting: str = "5w1s") -> ml_collections.ConfigDict:
  """Li et al. 2017's Meta-SGD on Omniglot: MAML's setting with a learned
  rate per parameter element, starting at MAML's inner rate (the paper
  draws the initial rates uniformly from [0.005, 0.1])."""
  return maml(setting, algorithm="metasgd")


def protonet(setting: str = "5w1s") -> ml_collections.ConfigDict:
  """Snell et al. 2017's Omniglot setting for prototypical networks.

  Training episodes of 60 classes with the test's shot and 5 queries per
  class, one episode per meta-step, Adam 1e-3; tested at the setting's way
  and shot. Differs from the paper: the rate follows a cosine to 1e-5 over
  20,000 episodes instead of halving every 2,000 until validation stops
  improving.
  """
  c = for_algorithm("protonet")
  test_way, c.k_shot = _setting(MAMLPP_SETTINGS, setting)
  c.n_way, c.eval_n_way = 60, test_way
  c.n_query = 5
  c.meta_batch_size = 1
  c.meta_steps = 20_000
  c.steps_per_epoch = 2_000
  c.outer_lr, c.lr_schedule, c.outer_lr_min = 1e-3, "cosine", 1e-5
  c.eval_every = c.checkpoint_every = 2_000
  return c


def protomaml(setting: str = "5w1s") -> ml_collections.ConfigDict:
  """MAML's Omniglot setting (:func:`maml`) with the head of each task
  initialised from the support prototypes (Triantafillou et al. 2020)."""
  return maml(setting, algorithm="protomaml")


# Rajeswaran et al. 2019 (iMAML with gradient descent), Omniglot:
# setting -> inner steps.
IMAML_INNER_STEPS = {"5w1s": 16, "5w5s": 16, "20w1s": 25, "20w5s": 25}


def imaml(setting: str = "5w1s") -> ml_collections.ConfigDict:
  """Rajeswaran et al. 2019's Omniglot setting for iMAML (gradient-descent
  inner loop): MAML's way, shot and meta-batch, 16 (5-way) or 25 (20-way)
  proximal inner steps with lambda 2, and 5 conjugate-gradient steps for
  the meta-gradient. The paper does not give its inner rate; MAML's is
  kept."""
  c = maml(setting, algorithm="imaml")
  c.inner_steps = c.eval_inner_steps = _setting(IMAML_INNER_STEPS, setting)
  c.imaml_lambda, c.imaml_cg_steps = 2.0, 5
  return c


def differences(config: ml_collections.ConfigDict,
                reference: ml_collections.ConfigDict) -> list[str]:
  """``field reference -> value`` for every field that differs."""
  ref = reference.to_dict()
  return [f"{k} {ref.get(k)!r} -> {v!r}" for k, v in config.to_dict().items()
          if k not in ("description", "algorithm") and ref.get(k) != v]
