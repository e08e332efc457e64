"""Models found by name: ``config.model`` -> how to build it from a config.

A model registers its builder and the config fields it reads, so the config
checks, the build, the report header and the benchmark need no list of
their own: a new model is one new file that calls :func:`register` (name
that file in ``config.plugins`` to use it from the binaries). The built-in
models register themselves in their modules (conv-4, ResNet-12, MLP).
"""

from typing import Any, Callable, NamedTuple, Optional

import ml_collections

Model = Any  # metalearn.models.Model: its (init, apply) pair and split.


class Shape(NamedTuple):
  """What the data and the algorithm fix about a model.

  Attributes:
    n_out: outputs per input (``n_way`` logits, or 1 for regression).
    input_shape: one input's shape, e.g. (28, 28, 1).
    bn_steps: one batch-norm affine per inner step (MAML++), 0: one shared.
  """
  n_out: int
  input_shape: tuple[int, ...]
  bn_steps: int


class ModelSpec(NamedTuple):
  """A registered model.

  Attributes:
    name: the ``config.model`` value.
    build: ``build(config, shape) -> metalearn.models.Model`` (float32
      parameters; the caller sets the compute dtype).
    fields: the config fields ``build`` reads (checked to exist).
    describe: ``describe(config) -> str``, e.g. ``conv-4 with 64 filters``.
    check: ``check(config)`` raises ValueError naming a bad field, or None.
  """
  name: str
  build: Callable[[ml_collections.ConfigDict, Shape], Model]
  fields: tuple[str, ...]
  describe: Callable[[ml_collections.ConfigDict], str]
  check: Optional[Callable[[ml_collections.ConfigDict], None]] = None


_MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
  """Adds (or replaces) a model under ``spec.name``; returns it."""
  if not isinstance(spec, ModelSpec):
    raise TypeError(f"register takes a ModelSpec; got {type(spec).__name__}.")
  _MODELS[spec.name] = spec
  return spec


def names() -> tuple[str, ...]:
  """The registered model names, in registration order."""
  return tuple(_MODELS)


def get(name: str) -> ModelSpec:
  """The model called ``name``; ValueError listing the registered names."""
  if name not in _MODELS:
    raise ValueError(f"config.model={name!r} is invalid: must be one of "
                     f"{', '.join(_MODELS)}")
  return _MODELS[name]


def positive_ints(config: ml_collections.ConfigDict, field: str) -> None:
  """``config.field`` is a sequence of integers >= 1 (layer widths)."""
  values = config[field]
  if isinstance(values, (str, int)) or any(
      isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in values):
    raise ValueError(f"config.{field}={values!r} is invalid: must be "
                     "integers >= 1")
