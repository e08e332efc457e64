"""The package's layers import downwards only: no module imports another
that imports it back, at module level or inside a function."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "metalearn"


def _module_name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
  """The metalearn modules that ``path`` imports anywhere in its body."""
  name = _module_name(path)
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) -
                                           node.level + 1] + [base]).strip(".")
      found.add(base)
      found.update(f"{base}.{a.name}" for a in node.names)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == "import_module" and node.args
          and isinstance(node.args[0], ast.Constant)):
      found.add(node.args[0].value)
  return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
  paths = [p for p in PACKAGE.rglob("*.py")]
  modules = {_module_name(p) for p in paths}
  return {_module_name(p): _imports(p, modules) for p in paths}


def _cycle(graph: dict[str, set[str]]):
  """One import cycle as a list of modules, or None."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for dep in sorted(graph[node]):
      # A package's __init__ importing its own submodules is not a cycle
      # back up: the submodule importing its package is.
      if state.get(dep) == 1:
        return stack[stack.index(dep):] + [dep]
      if dep not in state:
        found = visit(dep)
        if found:
          return found
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def _without_package_roots(graph):
  """Drops edges to a package's ``__init__`` from its own submodules'
  parent chain only when the ``__init__`` merely re-exports (an
  ``import metalearn.x.y`` always runs ``metalearn.x`` first; that is
  Python's order, not a cycle of ours)."""
  out = {}
  for module, deps in graph.items():
    out[module] = {d for d in deps if not module.startswith(d + ".")}
  return out


def test_the_import_graph_has_no_cycle():
  graph = _without_package_roots(_graph())
  assert len(graph) > 30  # the walk found the package
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None
