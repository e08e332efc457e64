"""Config validation: random bad values never pass silently."""

import importlib

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import ml_collections
import pytest

from metalearn import config_checks
from metalearn import configs
from metalearn.data import shapes

# field -> smallest valid integer.
INT_FIELDS = {
    "n_way": 2, "k_shot": 1, "n_query": 1, "eval_n_query": 1,
    "inner_steps": 1, "eval_inner_steps": 1, "meta_batch_size": 1,
    "meta_steps": 1, "steps_per_call": 1, "steps_per_epoch": 1, "filters": 1,
    "test_tasks": 1, "eval_chunk_size": 1, "msl_epochs": 0,
    "first_order_epochs": 0, "eval_every": 0, "checkpoint_every": 0,
    "val_tasks": 0, "train_pool": 0, "seed": 0,
}
POSITIVE_FIELDS = ("inner_lr", "outer_lr", "inner_adam_lr")
CHOICE_FIELDS = ("algorithm", "dataset", "lr_schedule", "batching",
                 "eval_batching", "conv_impl", "compute_dtype", "model", "loss",
                 "outer_optimizer", "inner_optimizer")
NOT_AN_INT = st.one_of(st.floats(allow_nan=True), st.text(max_size=5),
                       st.none())


def loose_config():
  """The defaults without ConfigDict's type safety, as a config file that
  sets a field to a value of another type would give."""
  return ml_collections.ConfigDict(configs.base().to_dict(), type_safe=False)


def rejects(field, value):
  config = loose_config()
  config[field] = value
  with pytest.raises(ValueError, match=f"config.{field}="):
    config_checks.validate_config(config)


def test_a_model_checks_the_fields_it_reads():
  # The model registry's entry checks its own fields, for the chosen model.
  config = loose_config()
  config.model, config.activation = "mlp", "gelu"
  with pytest.raises(ValueError, match="config.activation='gelu'"):
    config_checks.validate_config(config)
  config.model = "conv4"  # conv-4 reads no activation
  config_checks.validate_config(config)
  with pytest.raises(ValueError, match="config.model='vit' is invalid: "
                     "must be one of conv4"):
    config.model = "vit"
    config_checks.validate_config(config)


def test_the_defaults_and_every_paper_config_pass():
  config_checks.validate_config(configs.base())
  for setting in configs.MAML_SETTINGS:
    config_checks.validate_config(configs.maml(setting))
    config_checks.validate_config(configs.mamlpp(setting))
    config_checks.validate_config(configs.metasgd(setting))
    config_checks.validate_config(configs.reptile(setting))


@pytest.mark.parametrize("changes, field, words", [
    ({"loss": "mse"}, "loss", "is classification"),
    ({"dataset": "sinusoid"}, "loss", "is regression"),
    ({"dataset": "sinusoid", "loss": "mse"}, "model", "is regression"),
    ({"dataset": "mini_imagenet", "n_query": 600}, "n_query",
     r"must be <= 600 \(examples per class of 'mini_imagenet'\)"),
    ({"n_query": 20}, "n_query", r"must be <= 20"),
    ({"lr_schedule": "linear", "outer_lr_min": 1.0}, "outer_lr_min",
     r"\[0, outer_lr"),
    ({"model": "resnet12", "widths": (8, 0, 8, 8)}, "widths", ">= 1"),
])
def test_combinations_are_checked(changes, field, words):
  config = loose_config()
  config.update(changes)
  with pytest.raises(ValueError, match=f"config.{field}=.*{words}"):
    config_checks.validate_config(config)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(INT_FIELDS)), st.integers(max_value=-1))
def test_integers_below_the_range(field, below):
  rejects(field, INT_FIELDS[field] + below)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(INT_FIELDS)), NOT_AN_INT)
def test_non_integers(field, value):
  rejects(field, value)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(POSITIVE_FIELDS),
       st.one_of(st.floats(max_value=0.0), st.just(float("nan")),
                 st.text(max_size=3)))
def test_rates_must_be_positive_numbers(field, value):
  rejects(field, value)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CHOICE_FIELDS), st.text(max_size=12))
def test_choices_outside_their_set(field, value):
  config = configs.base()
  # Valid on their own with the defaults; "sinusoid" and "mse" are valid
  # only together (test_combinations_are_checked).
  valid = {"algorithm": ("maml", "fomaml", "mamlpp", "mamlpp_first_order",
                         "anil", "metasgd", "reptile"),
           "dataset": ("tfds", "lake", "vinyals", "mamlpp", "mini_imagenet"),
           "lr_schedule": ("constant", "cosine", "linear"),
           "batching": ("vmap", "map"),
           "eval_batching": ("auto", "vmap", "map"),
           "conv_impl": ("auto", "xla", "matmul", "im2col", "im2col_vjp",
                         "im2col_native", "direct_native"),
           "compute_dtype": ("float32", "bfloat16"),
           "model": ("conv4", "resnet12", "mlp"),
           "loss": ("cross_entropy",),
           "outer_optimizer": ("adam", "sgd"),
           "inner_optimizer": ("sgd", "adam"),
           "activation": ("relu", "tanh")}[field]
  if value in valid:
    config[field] = value
    config_checks.validate_config(config)
  else:
    rejects(field, value)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 19), st.integers(1, 40))
def test_shots_plus_queries_fit_the_drawings(k_shot, n_query):
  config = configs.base()
  config.k_shot, config.n_query, config.eval_n_query = k_shot, n_query, 1
  if k_shot + n_query > 20:
    with pytest.raises(ValueError, match="config.n_query="):
      config_checks.validate_config(config)
  else:
    config_checks.validate_config(config)


@pytest.mark.parametrize("name", ["protonet", "protomaml", "imaml"])
@pytest.mark.parametrize("setting", ["5w1s", "5w5s", "20w1s", "20w5s"])
def test_the_newer_algorithms_presets_pass_the_checks(name, setting):
  config = importlib.import_module(f"metalearn.presets.{name}").get_config(
      setting)
  config_checks.validate_config(config)
  assert config.algorithm == name
  test_way = int(setting.split("w")[0])
  assert shapes.eval_n_way(config) == test_way
  assert config.k_shot == int(setting.split("w")[1][:-1])
  if name == "protonet":  # Snell et al. train on 60-way episodes.
    assert config.n_way == 60 and config.meta_batch_size == 1
  if name == "imaml":
    assert config.inner_steps == (16 if test_way == 5 else 25)


def test_an_algorithm_gets_what_its_row_needs():
  regression = importlib.import_module("metalearn.presets.sinusoid"
                                       ).get_config("maml")
  config_checks.validate_config(regression)
  for prototypes in ("protonet", "protomaml"):
    regression.algorithm = prototypes
    with pytest.raises(ValueError, match=f"config.algorithm='{prototypes}'.*"
                       "needs class labels"):
      config_checks.validate_config(regression)
  implicit = configs.imaml("5w1s")
  implicit.inner_optimizer = "adam"
  with pytest.raises(ValueError, match="config.inner_optimizer='adam'.*"
                     "must be 'sgd' for imaml"):
    config_checks.validate_config(implicit)
