"""Every notebook runs top to bottom at the small size (the committed one).

Each notebook is executed with nbclient in a fresh ``python3`` kernel of this
interpreter (ipykernel's kernelspec in the venv, or its built-in fallback),
with ``notebooks/`` as working directory and the repository root on
``PYTHONPATH``, so ``import metalearn`` works without installing it. Kernels
share this suite's persistent JAX compilation cache (tests/conftest.py).
Slow by the standard of this suite: about a minute per notebook on an idle
2-core CPU.
"""

import os
from pathlib import Path
import sys

import jax
from jupyter_client.kernelspec import KernelSpecManager
import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("maml_on_omniglot.ipynb", "mamlpp_on_omniglot.ipynb",
         "anil_adaptive_on_omniglot.ipynb")
CELL_TIMEOUT_S = 900


def kernel_env() -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_NUMPY_RANK_PROMOTION"] = "raise"  # as in tests/conftest.py
  cache = jax.config.jax_compilation_cache_dir
  if cache:
    env["JAX_COMPILATION_CACHE_DIR"] = cache
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
  # Prefer this venv's kernelspec over a user-wide "python3" one.
  env["JUPYTER_PREFER_ENV_PATH"] = "1"
  return env


def execute(path: Path, env: dict) -> nbformat.NotebookNode:
  """Runs a notebook in place of a user; raises CellExecutionError."""
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
      nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
      resources={"metadata": {"path": str(path.parent)}})
  client.execute(env=env)
  return nb


def test_python3_kernel_is_this_interpreter(monkeypatch):
  monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
  spec = KernelSpecManager().get_kernel_spec("python3")
  # jupyter_client runs argv[0] == "python" as sys.executable.
  assert spec.argv[0] in ("python", sys.executable), spec.argv
  assert spec.argv[1:3] == ["-m", "ipykernel_launcher"], spec.argv


def test_notebooks_are_built_and_have_no_outputs():
  sys.path.insert(0, str(NOTEBOOKS))
  try:
    import build_notebooks  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(NOTEBOOKS))
  assert tuple(build_notebooks.NOTEBOOKS) == NAMES
  assert build_notebooks.main(["--check"]) == 0
  for name in NAMES:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source.startswith("# The size of every run"), name
    assert "SMALL = True" in code[0].source, name
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_at_small_size(name, omniglot_cache_dir, tmp_path):
  env = kernel_env()
  env["METALEARN_CACHE_DIR"] = str(omniglot_cache_dir)
  env["TMPDIR"] = str(tmp_path)  # the notebooks' run dirs go here
  nb = execute(NOTEBOOKS / name, env)
  errors = [out for cell in nb.cells for out in cell.get("outputs", [])
            if out.output_type == "error"]
  assert not errors, errors
  images = [out for cell in nb.cells for out in cell.get("outputs", [])
            if "image/png" in out.get("data", {})]
  assert images, f"{name} drew no figure"
