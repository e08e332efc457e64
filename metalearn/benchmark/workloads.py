"""What a benchmark row computes (workload) and how (mode), and its inputs.

A :class:`Workload` names an algorithm of :mod:`metalearn.algorithms` and
the task and model sizes (conv-4 on Omniglot-shaped images by default, or
ResNet-12 on colour ones); :func:`make_problem` turns it into the model,
inner rates, multi-step-loss weights and synthetic data that
both implementations (:mod:`metalearn.benchmark.plain` and the tuned library step)
compute on. A :class:`Mode` is parsed from a spec string by
:func:`parse_mode`.
"""

import functools
import itertools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metalearn import algorithms as algorithm_table
from metalearn import configs
from metalearn import core
from metalearn import rules
from metalearn import schedules
from metalearn.benchmark.plain import Problem
from metalearn.data import episodes
from metalearn.inner_lrs import fixed_inner_lrs
from metalearn.models import registry as model_registry
from metalearn.types import Array, Task

INNER_LR = 0.1
OUTER_LR = 1e-3
# ANIL (head_only): only the classifier head adapts in the inner loop.
_BODY = ("conv", "norm")


class Workload(NamedTuple):
  """What is computed: algorithm, task shape, model size, MSL schedule.

  Attributes:
    algorithm: a name in :data:`metalearn.algorithms.ALGORITHMS`.
    meta_batch_size: tasks per meta-step.
    n_way: classes per task.
    k_shot: support examples per class.
    n_query: query examples per class.
    inner_steps: inner SGD steps.
    filters: channels of every conv layer.
    num_blocks: conv blocks (fewer: faster to compile).
    image_size: height and width of the square images.
    msl_epochs: epochs over which MAML++'s multi-step loss is annealed.
    steps_per_epoch: meta-steps per epoch of that schedule.
    model: ``conv4`` (``filters``, ``num_blocks``) or ``resnet12``
      (``widths``).
    widths: ResNet-12's channels per residual block.
    channels: image channels: 1 (binary, Omniglot-like) or 3 (colour uint8).
  """
  algorithm: str = "maml"
  meta_batch_size: int = 4
  n_way: int = 5
  k_shot: int = 1
  n_query: int = 15
  inner_steps: int = 1
  filters: int = 64
  num_blocks: int = 4
  image_size: int = 28
  msl_epochs: int = 10
  steps_per_epoch: int = 500
  model: str = "conv4"
  widths: tuple[int, ...] = (64, 160, 320, 640)
  channels: int = 1


class Mode(NamedTuple):
  """How it is computed; built from a spec string by :func:`parse_mode`."""
  spec: str = "plain"
  unroll: bool = False
  remat: bool = False
  bf16: bool = False
  shard: bool = False
  map: bool = False
  every_query: bool = False
  conv: str = "auto"
  steps_per_call: int = 1
  block_remat: bool = False
  body_loop: bool = False
  fast_compile: bool = False
  old_fusion: bool = False
  fast_compile_preset: bool = False
  ynn_elementwise: bool = False
  tile: str = "auto"
  llvm_level_1: bool = False

  @property
  def plain(self) -> bool:
    return self.spec == "plain"


_CONV_KNOBS = {"mm": "matmul", "i2c": "im2col", "i2cv": "im2col_vjp",
               "i2cn": "im2col_native", "dn": "direct_native",
               "xla": "xla"}


def _apply_knob(mode: Mode, knob: str, spec: str) -> Mode:
  """``mode`` with one ``+``-joined knob of ``spec`` switched on."""
  if knob in ("unroll", "remat", "bf16", "shard", "map"):
    return mode._replace(**{knob: True})
  if knob == "everyq":
    return mode._replace(every_query=True)
  if knob in ("tile", "notile"):
    return mode._replace(tile="on" if knob == "tile" else "off")
  if knob == "blockremat":
    return mode._replace(block_remat=True)
  if knob == "bodyloop":
    return mode._replace(body_loop=True)
  if knob == "fastcc":
    return mode._replace(fast_compile=True)
  if knob == "oldfusion":
    return mode._replace(old_fusion=True)
  if knob == "fcpreset":
    return mode._replace(fast_compile_preset=True)
  if knob == "ynnew":
    return mode._replace(ynn_elementwise=True)
  if knob == "o1":
    return mode._replace(llvm_level_1=True)
  if knob in _CONV_KNOBS:
    return mode._replace(conv=_CONV_KNOBS[knob])
  if knob.startswith("spc") and knob[3:].isdigit() and int(knob[3:]) > 0:
    return mode._replace(steps_per_call=int(knob[3:]))
  raise ValueError(f"mode {spec!r}: unknown knob {knob!r}.")


def parse_mode(spec: str) -> Mode:
  """``plain`` or ``tuned`` plus knobs, e.g. ``tuned+remat+spc4``.

  Knobs: ``unroll`` (unroll the inner ``lax.scan``), ``remat``
  (``jax.checkpoint`` per inner step), ``bf16`` (bfloat16 compute), ``shard``
  (split tasks over all devices), ``map`` (``lax.map`` over tasks instead of
  ``vmap``), ``mm`` / ``i2c`` / ``i2cv`` / ``i2cn`` / ``dn`` / ``xla``
  (shifted-matmul / im2col / im2col with im2col derivatives / the same with
  the windows as a C++ loop / C++ convolutions without windows / XLA
  convolutions instead of the model's ``auto`` choice), ``tile`` /
  ``notile`` (one parameter copy per task on or off instead of ``auto``,
  :mod:`metalearn.task_copies`), ``everyq``
  (MAML/FOMAML run the query set after every inner step, weighted one-hot,
  as before the library skipped it: measures that lever), ``spcN`` (N meta-steps per call),
  ``blockremat`` (ResNet-12 only: ``nn.remat`` each residual block),
  ``bodyloop`` (ANIL adapts its head through the whole model at every inner
  step instead of running the body once per task: measures that lever),
  ``fastcc`` (compile with :data:`metalearn.compilation_cache.FAST_CPU_COMPILE`:
  measures compile time against run time), ``oldfusion`` (compile with
  :data:`metalearn.compilation_cache.OLD_CPU_FUSION` only), ``fcpreset``
  (compile with XLA's fast-compile preset,
  :data:`metalearn.compilation_cache.FAST_COMPILE_PRESET`), ``ynnew``
  (elementwise ops and reductions to YNNPACK too,
  :data:`metalearn.compilation_cache.YNN_ELEMENTWISE`), ``o1`` (LLVM at
  level 1 for XLA's kernels,
  :data:`metalearn.compilation_cache.LLVM_LEVEL_1`, instead of XLA's 3).

  Raises:
    ValueError: naming the mode, for an unknown head or knob.
  """
  head, *knobs = spec.strip().split("+")
  if head == "plain" and not knobs:
    return Mode("plain", unroll=True, conv="xla")
  if head != "tuned":
    raise ValueError(f"mode {spec!r}: expected 'plain' or 'tuned[+knob...]' "
                     "with knobs unroll, remat, bf16, shard, map, mm, i2c, "
                     "i2cv, xla, everyq, spcN, blockremat, bodyloop, fastcc, "
                     "oldfusion, fcpreset, ynnew, o1.")
  mode = Mode(spec.strip())
  for knob in knobs:
    mode = _apply_knob(mode, knob, spec)
  return mode


def grid(algorithms: Sequence[str], meta_batch_sizes: Sequence[int],
         n_way: Sequence[int] = (5,), k_shot: Sequence[int] = (1,),
         n_query: Sequence[int] = (15,), inner_steps: Sequence[int] = (1,),
         **fixed) -> list[Workload]:
  """Every combination of the given values, as workloads.

  Args:
    algorithms: names in :data:`metalearn.algorithms.ALGORITHMS`.
    meta_batch_sizes, n_way, k_shot, n_query, inner_steps: values of the
      :class:`Workload` field of that name.
    **fixed: other :class:`Workload` fields, one value each (``filters``,
      ``num_blocks``, ``image_size``, ``msl_epochs``, ``steps_per_epoch``,
      ``model``, ``widths``, ``channels``).

  Raises:
    ValueError: for an unknown algorithm name.
  """
  for name in algorithms:
    algorithm_table.get(name)
  return [Workload(a, t, n, k, q, s)._replace(**fixed)
          for a, t, n, k, q, s in itertools.product(
              algorithms, meta_batch_sizes, n_way, k_shot, n_query,
              inner_steps)]


def synthetic_dataset(seed: int = 0, *, num_classes: int = 100,
                      samples_per_class: int = 20, image_size: int = 28,
                      channels: int = 1) -> Array:
  """Random uint8 images shaped like a dataset cache.

  ``channels=1``: binary, like the Omniglot cache, [C, 20, H, W]. Otherwise
  0..255 colour, like the mini-ImageNet cache, [C, 20, H, W, channels]. Drawn
  with NumPy and copied to the device once, like the real cache; tasks are
  then sampled from it on the device.
  """
  if channels < 1:
    raise ValueError(f"channels must be >= 1, got {channels}.")
  shape = (num_classes, samples_per_class, image_size, image_size)
  rng = np.random.default_rng(seed)
  if channels == 1:
    return jnp.asarray(rng.integers(0, 2, shape, dtype=np.uint8))
  return jnp.asarray(rng.integers(0, 256, (*shape, channels), dtype=np.uint8))


def synthetic_task_fn(n_way: int, k_shot: int, n_query: int,
                      meta_batch_size: int) -> Callable[[Array, Array], Task]:
  """``task_fn(key, data) -> Task`` batch via the library's on-device sampler
  (:func:`metalearn.data.episodes.sample_tasks`): support_x
  [meta_batch_size, n_way * k_shot, H, W, ch], query_x
  [meta_batch_size, n_way * n_query, H, W, ch] (ch = 1 for [C, D, H, W]
  data)."""
  return functools.partial(episodes.sample_tasks, n_way=n_way, k_shot=k_shot,
                           n_query=n_query, batch_size=meta_batch_size)


def _model(w: Workload, bn_steps: int, conv_impl: str, block_remat: bool):
  """The workload's model of the model registry
  (:class:`metalearn.models.Model`), built as a config would build it."""
  if block_remat and w.model != "resnet12":
    raise ValueError("block_remat (mode knob blockremat) needs model "
                     f"'resnet12'; got {w.model!r}.")
  config = configs.base()
  config.update(dict(filters=w.filters, num_blocks=w.num_blocks,
                     widths=tuple(w.widths), conv_impl=conv_impl,
                     block_remat=block_remat))
  spec = model_registry.get(w.model)
  return spec.build(config, model_registry.Shape(
      w.n_way, (w.image_size, w.image_size, w.channels), bn_steps))


def make_problem(w: Workload, seed: int = 0, conv_impl: str = "auto", *,
                 block_remat: bool = False) -> Problem:
  """Builds the model, rates, weights and synthetic data of one workload.

  What the algorithm sets comes from :func:`metalearn.algorithms.get`:
  without a multi-step loss there are no step weights (the last step's query
  loss alone); with one, the weights of
  :func:`metalearn.schedules.msl_weights_fn`. MAML++ also gets per-step
  batch norm and learned rates; ANIL adapts the head alone.
  ``block_remat`` remats each ResNet-12 block (same function).

  Raises:
    ValueError: for an unknown algorithm or model name, an algorithm whose
      outer update is not a meta-gradient or whose inner loop is not
      MAML's (Reptile, iMAML, ProtoNet, Proto-MAML: not timed here), or
      ``block_remat`` with conv-4.
  """
  alg = algorithm_table.get(w.algorithm)
  if alg.outer != rules.META_GRADIENT or alg.inner is not None:
    raise ValueError(f"algorithm {w.algorithm!r}: the benchmark times "
                     "meta-gradient algorithms with MAML's inner loop "
                     "only.")
  n = w.inner_steps
  model = _model(w, n if alg.per_step_bn else 0, conv_impl, block_remat)
  frozen = _BODY if alg.head_only else ()
  # Under jit: one compile instead of one per eager op.
  params = jax.jit(model.init)(jax.random.key(seed))
  inner_lrs = jax.jit(lambda p: fixed_inner_lrs(
      p, INNER_LR, n, per_element=alg.per_element_lrs, frozen=frozen))(params)
  body_head = None
  if alg.head_only and model.body is not None:
    body_head = core.BodyHead(model.body, model.head)
  weights_fn = None
  if alg.multi_step_loss:
    weights_fn = schedules.msl_weights_fn(n, w.msl_epochs, w.steps_per_epoch)
  return Problem(
      model.apply, params, inner_lrs, weights_fn,
      synthetic_task_fn(w.n_way, w.k_shot, w.n_query, w.meta_batch_size),
      synthetic_dataset(seed, image_size=w.image_size, channels=w.channels),
      alg.first_order, learn_inner_lrs=alg.learn_inner_lrs,
      step_aware=model.step_aware, body_head=body_head)
