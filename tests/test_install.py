"""A wheel built from the repository installs in a fresh virtual
environment; its console commands train a preset config by name from
outside the checkout (the configs ship in the package) and adapt the run
to a folder of labelled images."""

import json
import os
from pathlib import Path
import site
import subprocess
import sys

from tests.image_trees import class_pattern
from tests.image_trees import write_image

REPO = Path(__file__).resolve().parent.parent


# The fresh environment must not see the checkout (PYTHONPATH) either.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(args, env=None, **kwargs):
  done = subprocess.run([str(a) for a in args], capture_output=True,
                        text=True, timeout=600, env=env or _ENV, **kwargs)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  return done.stdout


def test_the_wheel_runs_a_preset_by_name_outside_the_checkout(tmp_path):
  _run([sys.executable, "-m", "pip", "wheel", "--no-deps",
        "--no-build-isolation", "-q", "-w", tmp_path / "dist", REPO])
  wheel, = (tmp_path / "dist").glob("metalearn-*.whl")
  env_dir = tmp_path / "fresh"
  _run([sys.executable, "-m", "venv", env_dir])
  python = env_dir / "bin" / "python"
  # The dependencies come from this interpreter's site-packages, added as a
  # plain path: its .pth files (the checkout's editable install) stay out.
  fresh_site = Path(_run([python, "-c",
                          "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"]).strip())
  (fresh_site / "deps.pth").write_text(
      "\n".join(site.getsitepackages()) + "\n")
  _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
        wheel])
  env = dict(_ENV, JAX_PLATFORMS="cpu")
  where = _run([python, "-c", "import importlib.metadata as m, metalearn; "
                "print(metalearn.__file__, metalearn.__version__, "
                "m.version('metalearn'))"], cwd=tmp_path, env=env).split()
  assert not where[0].startswith(str(REPO)), where
  assert where[1] == where[2]  # one version, in the metadata too
  _run([env_dir / "bin" / "metalearn-train", "--config=cpu_small:fomaml",
        "--config.dataset=synthetic", "--config.filters=4",
        "--config.num_blocks=2", "--config.meta_steps=4",
        "--config.steps_per_call=2", "--config.eval_every=0",
        "--config.val_tasks=0", "--config.test_tasks=4",
        "--config.progress=false", "--nocompilation_cache",
        f"--workdir={tmp_path / 'run'}"], cwd=tmp_path, env=env)
  summary = json.loads((tmp_path / "run" / "eval.json").read_text())
  assert summary["algorithm"] == "fomaml" and summary["meta_steps"] == 4
  # The installed predict command adapts that run to a folder of classes.
  for c in range(3):
    for i in range(2):
      write_image(tmp_path / "support" / f"class{c}" / f"{i}.png",
                  class_pattern(c, 28))
    write_image(tmp_path / "query" / f"q{c}.png", class_pattern(c, 28))
  out = _run([env_dir / "bin" / "metalearn-predict",
              f"--workdir={tmp_path / 'run'}",
              f"--support_dir={tmp_path / 'support'}",
              f"--query_dir={tmp_path / 'query'}",
              f"--output_dir={tmp_path / 'predicted'}",
              "--nocompilation_cache"], cwd=tmp_path, env=env)
  assert "3 queries, 3 classes" in out, out
  assert (tmp_path / "predicted" / "predictions.csv").is_file()
