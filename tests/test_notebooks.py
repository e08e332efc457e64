"""The tutorial notebooks: paired with their sources, and run top to bottom.

Each notebook's source is a jupytext percent file, ``notebooks/<name>.py``,
paired with ``notebooks/<name>.ipynb`` (committed without outputs). After
editing the ``.py``, regenerate the notebook with
``jupytext --to ipynb notebooks/<name>.py``.

Each notebook is executed at the small size (the committed one) with
nbclient in a fresh ``python3`` kernel of this interpreter (ipykernel's
kernelspec in the venv, or its built-in fallback), with ``notebooks/`` as
working directory and the repository root on ``PYTHONPATH``, so
``import metalearn`` works without installing it. Kernels share this suite's
persistent JAX compilation cache (tests/conftest.py). Slow by the standard
of this suite: one to two minutes per notebook on an idle 2-core CPU.
"""

import os
from pathlib import Path
import re
import sys

import jax
from jupyter_client.kernelspec import KernelSpecManager
import jupytext
import nbclient
import nbformat
import pytest

from tests import xla_flags

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("maml_on_omniglot", "mamlpp_on_omniglot",
         "anil_adaptive_on_omniglot", "sinusoid_regression")
# Notebooks without Omniglot: no data extra, no cache.
WITHOUT_OMNIGLOT = ("sinusoid_regression",)
# Notebooks whose time goes into running rather than compiling: their
# kernels get XLA's full optimisation (tests/xla_flags.py). Measured alone
# in CPU seconds, MAML's notebook costs less optimised; MAML++'s and
# ANIL's compile more programs and cost more.
RUN_BOUND = ("sinusoid_regression", "maml_on_omniglot")
CELL_TIMEOUT_S = 900
REPO = "https://github.com/metalearn-dev/metalearn"
COLAB = ("https://colab.research.google.com/github/metalearn-dev/metalearn/"
         "blob/main/notebooks/{}.ipynb")
# Former names of the library's API; the notebooks use the current ones.
RETIRED = (r"\bnum_steps\b", r"\bnum_iterations\b", r"\biters_per_epoch\b",
           r"\bper_step_bn\s*=", r"\binner_adapt\b", r"metrics\.jsonl",
           r"experiments\.configs", r"learn_inner_lrs\s*=",
           r"\btrain_and_test\b", r"\breptile_inner\b", r"\bmetalearn\.experiment\b")


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
  return [(c.cell_type, c.source) for c in nb.cells]


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


def test_every_notebook_is_a_pair():
  assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)
  assert sorted(p.stem for p in NOTEBOOKS.glob("*.py")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_its_source(name):
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  nbformat.validate(nb)
  source = jupytext.read(NOTEBOOKS / f"{name}.py")
  assert cells(nb) == cells(source), (
      f"notebooks/{name}.ipynb is out of date: run "
      f"jupytext --to ipynb notebooks/{name}.py")
  assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
  assert nb.metadata["kernelspec"]["name"] == "python3"
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_opens_on_colab_and_sizes_in_one_cell(name):
  nb = jupytext.read(NOTEBOOKS / f"{name}.py")
  intro = nb.cells[0]
  assert intro.cell_type == "markdown"
  assert f"]({COLAB.format(name)})" in intro.source, "no Open in Colab badge"
  assert intro.source.count(REPO) == 1, "define the repository URL once"
  code = [c.source for c in nb.cells if c.cell_type == "code"]
  assert code[0].startswith("# The size of every run"), code[0]
  assert re.search(r"^SMALL = True\b", code[0], re.M), code[0]
  setup = code[1]
  assert 'if "google.colab" in sys.modules:' in setup
  if name in WITHOUT_OMNIGLOT:
    assert f'"metalearn @ git+{REPO}"' in setup
  else:
    assert f'"metalearn[data] @ git+{REPO}"' in setup
    assert "ml.data.ensure_cache(" in setup


@pytest.mark.parametrize("name", NAMES)
def test_notebook_uses_current_api_names(name):
  text = (NOTEBOOKS / f"{name}.py").read_text()
  found = [p for p in RETIRED if re.search(p, text)]
  assert not found, f"{name}.py uses retired names: {found}"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_at_small_size(name, request, tmp_path):
  env = kernel_env()
  if name in RUN_BOUND:
    env = xla_flags.optimising(env)
  if name not in WITHOUT_OMNIGLOT:
    env["METALEARN_CACHE_DIR"] = str(
        request.getfixturevalue("omniglot_cache_dir"))
  env["TMPDIR"] = str(tmp_path)  # the notebooks' run dirs go here
  before = {p: p.stat().st_mtime_ns for p in NOTEBOOKS.iterdir()}
  nb = execute(NOTEBOOKS / f"{name}.ipynb", env)
  errors = [out for cell in nb.cells for out in cell.get("outputs", [])
            if out.output_type == "error"]
  assert not errors, errors
  images = [out for cell in nb.cells for out in cell.get("outputs", [])
            if "image/png" in out.get("data", {})]
  assert images, f"{name} drew no figure"
  after = {p: p.stat().st_mtime_ns for p in NOTEBOOKS.iterdir()}
  assert after == before, "the notebook wrote into notebooks/"
