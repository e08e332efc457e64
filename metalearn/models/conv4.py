"""The standard 4-block convolutional few-shot learner (Vinyals et al. 2016).

4 x [3x3 conv, ``filters`` channels, batch norm, ReLU, 2x2 max-pool], then a
dense layer to ``n_way`` logits. Batch norm is transductive, as in MAML: it
normalises with the statistics of the current forward pass, so the model has
no mutable state and ``apply(params, x)`` is a pure function. The convolutions
have no bias: batch norm subtracts the per-channel mean right after them, so a
bias would have no effect and a gradient of float noise; the batch norm's
``offset`` is the per-channel shift.
"""

from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from metalearn import masking
from metalearn.models import im2col
from metalearn.models import native_windows
from metalearn.models import pooled_conv
from metalearn.models import registry
from metalearn.models.norm_pool import TransductiveBatchNorm
from metalearn.models.norm_pool import conv_moments
from metalearn.types import Array, PyTree


class Model(NamedTuple):
  """A model as two pure functions.

  Attributes:
    init: ``init(key) -> params``.
    apply: ``apply(params, x) -> logits [B, n_way]``; models built with
      ``bn_steps`` take ``apply(params, x, step)``. ``apply``, ``body`` and
      ``head`` also take ``mask=``, bool [B], the real rows of a padded
      batch (:mod:`metalearn.masking`): batch statistics ignore the others.
    step_aware: whether ``apply`` takes the inner step index.
    body: ``body(params, x) -> features [B, F]`` or ``None``; with ``head``,
      ``apply(params, x) == head(params, body(params, x))``, which lets a
      head-only inner loop (ANIL) run the body once per task.
    head: ``head(params, features [B, F]) -> outputs``, reading only
      ``params['head']``; or ``None``.
  """
  init: Callable[[Array], PyTree]
  apply: Callable[..., Array]
  step_aware: bool = False
  body: Optional[Callable[..., Array]] = None
  head: Optional[Callable[..., Array]] = None


def dense_head(params: PyTree, features: Array,
               mask: Optional[Array] = None) -> Array:
  """The ``'head'`` dense layer alone, of any width. features [B, F] ->
  [B, n_out]; ``mask`` (the real rows) changes nothing here."""
  del mask  # Row by row: no batch statistics.
  head = params["head"]
  return features @ head["kernel"] + head["bias"][None, :]


def without_head(params: PyTree) -> PyTree:
  """Every top-level entry of ``params`` but ``'head'``."""
  return {k: v for k, v in params.items() if k != "head"}


CONV_IMPLS = ("auto", "xla", "matmul", "im2col", "im2col_vjp", "im2col_native",
              "direct_native")
# The C++ implementations, by the name of im2col.conv3x3's ``impl``.
_NATIVE_IMPLS = {"im2col_native": "windows", "direct_native": "direct"}


def resolve_conv_impl(conv_impl: str) -> str:
  """``auto`` -> ``direct_native`` on CPU (``im2col_vjp`` where the C++
  kernels cannot be built), ``xla`` elsewhere; checks the name.

  On CPU, per-task kernels under ``vmap`` turn XLA convolutions into grouped
  convolutions that ran 11x slower than nine shifted matmuls (fwd + bwd,
  [8 tasks, 80 images, 14x14x64], docs/performance.md). One im2col matmul
  compiled faster than nine shifted ones, and ran faster at the MAML
  paper's shape, slower at some others; with im2col derivatives
  (``im2col_vjp``) instead of JAX's pads and sums it ran 1.05x to 1.33x
  faster again, and with the windows as one C++ loop (``im2col_native``)
  it compiled faster still. The convolution as C++ loops that never build
  the windows (``direct_native``; float32 and float64, the windows for other
  dtypes) ran faster than all of them (docs/benchmarks.md). Elsewhere XLA's
  convolution stays the default until a GPU measurement says otherwise.

  Raises:
    ValueError: for an unknown name, or a native one off a CPU or where
      its kernels cannot be built (the reason is in the message).
  """
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {', '.join(CONV_IMPLS)}; "
                     f"got {conv_impl!r}.")
  on_cpu = jax.default_backend() == "cpu"
  if conv_impl == "auto":
    if not on_cpu:
      return "xla"
    return "direct_native" if native_windows.available() else "im2col_vjp"
  if conv_impl in _NATIVE_IMPLS:
    if not on_cpu:
      raise ValueError(f"conv_impl={conv_impl!r} runs on a CPU only; this "
                       f"backend is {jax.default_backend()!r}: use 'auto'.")
    reason = native_windows.unavailable_reason()
    if reason:
      raise ValueError(f"conv_impl={conv_impl!r} needs its C++ kernel, "
                       f"which cannot be built here: {reason}. Use "
                       "'im2col_vjp'.")
  return conv_impl


class ShiftedMatmulConv(nn.Module):
  """A 3x3, stride-1, SAME convolution as nine shifted matmuls.

  The same function and parameters (``kernel`` [3, 3, C_in, C_out], same
  initialiser) as ``nn.Conv(features, (3, 3), padding="SAME",
  use_bias=False)``, written so that per-task kernels under ``vmap`` become
  batched matmuls instead of grouped convolutions. Input [B, H, W, C_in] ->
  [B, H, W, C_out].
  """
  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features))
    height, width = x.shape[-3:-1]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(
        jnp.einsum("bhwc,cd->bhwd", padded[:, dy:dy + height,
                                           dx:dx + width, :], kernel[dy, dx])
        for dy in range(3) for dx in range(3))


class Im2colConv(nn.Module):
  """A 3x3, stride-1, SAME convolution as one matmul (im2col).

  The nine shifted windows are stacked on the channel axis, [B, H, W,
  9 C_in], and multiplied by the kernel as a [9 C_in, C_out] matrix: one
  GEMM with a nine times deeper contraction instead of nine, and under
  ``vmap`` one batched GEMM over tasks. Same function and parameters as
  :class:`ShiftedMatmulConv`. With ``im2col_vjp`` its derivatives are
  im2col matmuls too (:mod:`metalearn.models.im2col`), with
  ``im2col_native`` their windows a C++ loop as well, and with
  ``direct_native`` the convolutions C++ loops without windows. Input [B,
  H, W, C_in] -> [B, H, W, C_out].
  """
  features: int
  conv_impl: str = "im2col"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features))
    if self.conv_impl == "im2col":
      return im2col.im2col_conv(x, kernel)
    return im2col.conv3x3(x, kernel,
                          _NATIVE_IMPLS.get(self.conv_impl, "xla"))


def conv3x3(features: int, conv_impl: str, name: str) -> nn.Module:
  """The 3x3 SAME convolution without bias that ``conv_impl`` names
  (``xla``, ``matmul``, ``im2col``, ``im2col_vjp``, ``im2col_native`` or
  ``direct_native``, resolved): same parameters."""
  if conv_impl == "matmul":
    return ShiftedMatmulConv(features, name=name)
  if conv_impl.startswith("im2col") or conv_impl in _NATIVE_IMPLS:
    return Im2colConv(features, conv_impl, name=name)
  return nn.Conv(features, (3, 3), padding="SAME", use_bias=False, name=name)


# Input channels up to which a block's batch-norm statistics come from its
# input's windows (norm_pool.conv_moments): a grey or colour image, many
# times smaller than the convolution's output.
FEW_CHANNELS = 3


class Conv4(nn.Module):
  """Conv-4 backbone and linear head. Input [B, H, W, C] -> [B, n_way].

  Each block is convolution, batch norm, ReLU and a 2x2 max-pool, computed
  with the pool before the normalisation (the same values; see
  :func:`metalearn.models.norm_pool.normalized_relu_pool`). A block whose
  input has at most ``FEW_CHANNELS`` channels takes its batch-norm
  statistics from the input's windows
  (:func:`metalearn.models.norm_pool.conv_moments`), the same numbers, and
  with ``direct_native`` convolves and picks the pool's corners in one C++
  call (:mod:`metalearn.models.pooled_conv`), never writing the
  convolution's output whole.

  ``conv_impl`` is a resolved name of :func:`conv3x3`: the same function
  and parameters every way.
  """
  n_way: int
  filters: int = 64
  num_blocks: int = 4
  bn_steps: int = 0
  conv_impl: str = "xla"
  features_only: bool = False

  @nn.compact
  def __call__(self, x: Array, step: Optional[Array] = None,
               mask: Optional[Array] = None) -> Array:
    for i in range(self.num_blocks):
      conv = conv3x3(self.filters, self.conv_impl, f"conv{i}")
      y, moments, pool = conv(x), None, None
      if mask is None and x.shape[-1] <= FEW_CHANNELS:
        kernel = conv.variables["params"]["kernel"]
        moments = conv_moments(x, kernel)
        if (self.conv_impl == "direct_native"
            and pooled_conv.supports(x, kernel)):  # y is then never built.
          pool = lambda sign, x=x, k=kernel: pooled_conv.conv_pool(
              x, k, sign)[0]
      x = TransductiveBatchNorm(self.bn_steps, name=f"norm{i}")(
          y, step, mask, relu_pool=True, moments=moments, conv_pool=pool)
    x = x.reshape((x.shape[0], -1))
    if self.features_only:
      return x
    return nn.Dense(self.n_way, name="head")(x)


def conv4(n_way: int,
          *,
          input_shape: tuple[int, ...] = (28, 28, 1),
          filters: int = 64,
          num_blocks: int = 4,
          bn_steps: int = 0,
          conv_impl: str = "auto") -> Model:
  """Builds the conv-4 model.

  Args:
    n_way: number of output classes; >= 2.
    input_shape: one input's shape (H, W, C).
    filters: channels of every conv layer; >= 1.
    num_blocks: conv blocks; each halves H and W.
    bn_steps: 0 for one batch-norm affine per layer; N > 0 for one per inner
      step (MAML++), which makes ``apply`` take the step index.
    conv_impl: ``xla`` (``nn.Conv``), ``matmul`` (nine shifted matmuls),
      ``im2col`` (one matmul; both fast for per-task kernels on CPU),
      ``im2col_vjp`` (``im2col`` whose derivatives are im2col matmuls too;
      reverse mode only, :mod:`metalearn.models.im2col`),
      ``im2col_native`` (``im2col_vjp`` with the windows as a C++ loop, CPU
      only, :mod:`metalearn.models.native_windows`), ``direct_native``
      (the convolutions as C++ loops without windows, CPU only,
      :mod:`metalearn.models.native_conv`) or ``auto`` (``direct_native``
      on CPU, ``im2col_vjp`` where its kernels cannot be built, else
      ``xla``). Same parameters and function every way.

  Returns:
    A :class:`Model`.
  """
  if n_way < 2:
    raise ValueError(f"n_way must be >= 2, got {n_way}.")
  if filters < 1:
    raise ValueError(f"filters must be >= 1, got {filters}.")
  if bn_steps < 0:
    raise ValueError(f"bn_steps must be >= 0, got {bn_steps}.")
  module = Conv4(n_way, filters, num_blocks, bn_steps,
                 resolve_conv_impl(conv_impl))
  return flax_model(module, jnp.zeros((2, *input_shape), jnp.float32),
                    step_aware=bool(bn_steps))


def flax_model(module: nn.Module, dummy: Array, *,
               step_aware: bool = False) -> Model:
  """A flax module with a ``features_only`` field and a ``'head'`` dense
  layer as a :class:`Model`, initialised on ``dummy`` inputs.

  A step-aware module (``__call__(x, step)``) gets no body/head split; the
  others get ``body`` (the module with ``features_only=True``) and
  :func:`dense_head`. ``mask=`` reaches the module only when given (a
  padded batch), so a module without a ``mask`` argument serves fixed-shape
  tasks.
  """
  def init(key):
    return module.init(key, dummy)["params"]

  if step_aware:
    def apply(params, x, step, mask=None):
      return module.apply({"params": params}, x, step,
                          **masking.model_kwargs(mask))
    return Model(init, apply, step_aware=True)

  def apply(params, x, mask=None):
    return module.apply({"params": params}, x, **masking.model_kwargs(mask))

  body_module = module.clone(features_only=True)

  def body(params, x, mask=None):
    return body_module.apply({"params": without_head(params)}, x,
                             **masking.model_kwargs(mask))
  return Model(init, apply, body=body, head=dense_head)


def _check(config) -> None:
  if (isinstance(config.filters, bool) or not isinstance(config.filters, int)
      or config.filters < 1):
    raise ValueError(f"config.filters={config.filters!r} is invalid: must "
                     "be an integer >= 1")


registry.register(registry.ModelSpec(
    "conv4",
    build=lambda c, shape: conv4(
        shape.n_out, input_shape=shape.input_shape, filters=c.filters,
        num_blocks=c.num_blocks, bn_steps=shape.bn_steps,
        conv_impl=c.conv_impl),
    fields=("filters", "num_blocks", "conv_impl"),
    describe=lambda c: f"conv-4 with {c.filters} filters",
    check=_check))
