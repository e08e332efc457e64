"""The dataset registry, the synthetic dataset, the data package's layout."""

import ast
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import configs
from metalearn import data
from metalearn.data import episodes
from metalearn.data import sinusoid
from metalearn.data import synthetic

DATA_DIR = Path(data.__file__).parent
BUILT_IN = ("tfds", "lake", "vinyals", "mamlpp", "mini_imagenet", "sinusoid",
            "synthetic")


def small_config(**fields):
  config = configs.base()
  config.update(dict(dataset="synthetic", n_way=3, k_shot=1, n_query=2,
                     eval_n_query=3, meta_batch_size=2, val_tasks=2,
                     test_tasks=3, train_pool=0, rotate=False))
  config.update(fields)
  return config


# ------------------------------------------------------------- the registry


def test_built_ins_are_registered():
  assert set(BUILT_IN) <= set(data.names())
  for name in BUILT_IN:
    dataset = data.get(name)
    assert dataset.name == name and dataset.description
    assert dataset.objective in ("cross_entropy", "mse")
  assert data.get("mini_imagenet").input_shape(None) == (84, 84, 3)
  assert data.get("sinusoid").input_shape(None) == (1,)


def test_unknown_name_lists_the_registered_names():
  with pytest.raises(ValueError, match=r"config.dataset='cifar' is invalid: "
                     r"must be one of .*vinyals.*sinusoid.*synthetic"):
    data.get("cifar")
  with pytest.raises(TypeError, match="Dataset"):
    data.register(("toy",))


def test_a_dataset_from_a_user_file_is_found():
  rng = np.random.default_rng(0)
  classes = lambda c: rng.integers(0, 2, (c, 5, 6, 6), dtype=np.uint8)
  splits = data.Splits(classes(4), classes(3), classes(3))
  toy = data.register(data.image_dataset(
      "toy_test_blobs", "toy blobs", lambda config: splits,
      input_shape=(6, 6, 1), examples_per_class=5))
  assert data.get("toy_test_blobs") is toy
  assert "toy_test_blobs" in data.names()
  # Registering the same name again replaces it (a file imported again).
  again = data.register(toy._replace(description="toy blobs, again"))
  assert data.get("toy_test_blobs") is again
  config = small_config(dataset="toy_test_blobs")
  toy.check(config)
  parts = toy.load(config)
  chex.assert_shape(parts.test_tasks.query_x, (3, 9, 6, 6, 1))
  tasks = jax.jit(toy.task_fn(config))(jax.random.key(0), parts.train_data)
  chex.assert_shape(tasks.support_x, (2, 3, 6, 6, 1))
  with pytest.raises(ValueError, match=r"config.n_query=5 .*\[1, 4\]"):
    toy.check(small_config(dataset="toy_test_blobs", n_query=5))
  with pytest.raises(ValueError, match=r"config.loss='mse' .*classification"):
    toy.check(small_config(dataset="toy_test_blobs", loss="mse"))
  with pytest.raises(ValueError, match=r"config.n_way=4 .*val split has 3"):
    toy.load(small_config(dataset="toy_test_blobs", n_way=4))


def test_image_parts_use_the_fixed_seeds():
  config = small_config(train_pool=4, seed=5)
  parts = data.get("synthetic").load(config)
  splits = synthetic.make_splits()
  sizes = dict(n_way=3, k_shot=1)
  expected = (
      episodes.fixed_tasks(6, jnp.asarray(splits.train), num_tasks=4,
                           n_query=2, **sizes),
      episodes.fixed_tasks(7, jnp.asarray(splits.val), num_tasks=2,
                           n_query=3, **sizes),
      episodes.fixed_tasks(8, jnp.asarray(splits.test), num_tasks=3,
                           n_query=3, **sizes))
  chex.assert_trees_all_equal(tuple(parts), expected)
  draw = data.get("synthetic").task_fn(config)
  chex.assert_trees_all_equal(
      draw(jax.random.key(1), parts.train_data),
      episodes.sample_from_pool(jax.random.key(1), parts.train_data, 2))
  assert data.get("synthetic").load(small_config(val_tasks=0)).val_tasks is None


def test_sinusoid_parts_and_checks():
  sine = data.get("sinusoid")
  config = small_config(dataset="sinusoid", loss="mse", model="mlp",
                        k_shot=5, n_query=4)
  sine.check(config)
  parts = sine.load(config)
  assert parts.train_data.shape == (0,)
  chex.assert_trees_all_equal(parts.test_tasks, sinusoid.fixed_tasks(
      config.seed + 3, num_tasks=3, k_shot=5, n_query=3))
  tasks = sine.task_fn(config)(jax.random.key(2), parts.train_data)
  chex.assert_shape(tasks.query_y, (2, 4, 1))
  with pytest.raises(ValueError, match=r"config.model='conv4' .*regression"):
    sine.check(small_config(dataset="sinusoid", loss="mse"))
  with pytest.raises(ValueError, match=r"config.loss='cross_entropy' .*regr"):
    sine.check(small_config(dataset="sinusoid", model="mlp"))


# ---------------------------------------------------------- synthetic data


def test_synthetic_is_deterministic_and_omniglot_shaped():
  splits = synthetic.make_splits()
  assert [x.shape for x in splits] == [(64, 20, 28, 28), (16, 20, 28, 28),
                                       (20, 20, 28, 28)]
  for part, again in zip(splits, synthetic.make_splits()):
    assert part.dtype == np.uint8
    np.testing.assert_array_equal(part, again)
  every = np.concatenate(splits)
  assert set(np.unique(every)) == {0, 1}
  assert 0.03 < every.mean() < 0.3  # Strokes on a blank page.
  other = synthetic.make_splits(seed=1)
  assert not np.array_equal(other.train, splits.train)


def test_synthetic_classes_are_distinguishable():
  """5-way 1-shot nearest neighbour on pixels: far above chance (20%)."""
  test = jnp.asarray(synthetic.make_splits().test)
  tasks = data.fixed_tasks(0, test, num_tasks=50, n_way=5, k_shot=1,
                           n_query=4)
  support = np.asarray(tasks.support_x).reshape(50, 5, -1)
  query = np.asarray(tasks.query_x).reshape(50, 20, -1)
  distance = ((query[:, :, None] - support[:, None]) ** 2).sum(-1)
  accuracy = np.mean(distance.argmin(-1) == np.asarray(tasks.query_y))
  assert accuracy > 0.4, accuracy


# ------------------------------------------------------------- the layout


def _module_name(path: Path) -> str:
  parts = path.relative_to(DATA_DIR.parents[1]).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
  """{module: modules of metalearn.data it imports}, every import statement
  (function-level ones too) and every ``importlib.import_module("...")``."""
  paths = {_module_name(p): p for p in DATA_DIR.rglob("*.py")}
  graph = {}
  for name, path in paths.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        targets.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # from . import x, from ..omniglot import y
          parent = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(parent + ([base] if base else []))
        for alias in node.names:
          sub = f"{base}.{alias.name}"
          targets.add(sub if sub in paths else base)
      elif (isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "import_module"
            and node.args and isinstance(node.args[0], ast.Constant)):
        targets.add(node.args[0].value)
    graph[name] = {t for t in targets if t in paths and t != name}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state = {}

  def visit(node, path):
    state[node] = "open"
    for target in sorted(graph[node]):
      if state.get(target) == "open":
        return path[path.index(target):] + [target]
      if target not in state:
        cycle = visit(target, path + [target])
        if cycle:
          return cycle
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node, [node])
      if cycle:
        return cycle
  return None


def test_the_data_package_has_no_import_cycle():
  graph = import_graph()
  assert "metalearn.data.omniglot.access" in graph
  assert graph["metalearn.data.omniglot.access"] >= {
      "metalearn.data.omniglot.build", "metalearn.data.omniglot.store"}
  assert find_cycle(graph) is None, find_cycle(graph)
  # The check itself finds a cycle when there is one.
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c",
                                                              "a"]


def test_no_module_getattr_shims():
  for path in DATA_DIR.rglob("*.py"):
    tree = ast.parse(path.read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "__getattr__" not in names, path
