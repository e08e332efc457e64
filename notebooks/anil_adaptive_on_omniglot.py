# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ANIL with learned inner rates vs MAML++ on Omniglot
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/metalearn-dev/metalearn/blob/main/notebooks/anil_adaptive_on_omniglot.ipynb)
#
# ANIL (Raghu et al., 2020, *Rapid learning or feature reuse?*) adapts only
# the classifier head in the inner loop; the body (the conv layers) is
# learned by the outer loop alone. In [`metalearn`][repo] it is the `anil`
# algorithm of `metalearn.ALGORITHMS` (`head_only=True`): the body's inner
# learning rates are `None`, so the inner loop never computes a gradient for
# it, while the head keeps MAML++'s learned per-step rates and the
# multi-step loss (`metalearn.configs.mamlpp(setting, "anil")`). On the same
# tasks as MAML++, this notebook measures:
#
# * test accuracy of both;
# * the time per meta-step of both (ANIL should be cheaper);
# * how much of MAML++'s adaptation the head alone carries: the MAML++
#   meta-parameters tested again with only the head adapting.
#
# **Set-up.**
#
# * *On Colab*: open it with the badge above. The set-up cell installs
#   `metalearn` (with its `data` extra) from [the repository][repo], and the
#   Omniglot cache is built on first use from TFDS's download (about a
#   minute). For the papers' sizes, pick *Runtime → Change runtime type →
#   GPU* and set `SMALL = False` in the next cell.
# * *Locally* (a CPU is enough at the small size): from a checkout,
#   `pip install -e ".[data,notebooks]"`, plus Jupyter to open the notebook.
#   The Omniglot cache is built once, from the first source found
#   (`docs/data.md`).
#
# The next cell is the only one to edit: everything that depends on the size
# of the runs reads from it.
#
# [repo]: https://github.com/metalearn-dev/metalearn

# %%
# The size of every run in this notebook; the only cell to edit.
# SMALL = True : minutes on a 2-core CPU (tiny network, few meta-steps, few
#                test tasks); the numbers are far from the papers'.
# SMALL = False: MAML++'s protocol (metalearn.configs), for a GPU; far
#                longer. Runs then live in ~/metalearn_runs/<name> and resume
#                when the notebook is run again.
SMALL = True
SETTING = "5w1s"  # N-way K-shot: 5w1s, 5w5s, 20w1s or 20w5s.
SMALL_OVERRIDES = dict(
    filters=8,            # conv channels (paper: 64)
    meta_batch_size=4,    # tasks per meta-step (8)
    meta_steps=100,       # (50,000)
    inner_steps=3, eval_inner_steps=3,  # (5)
    steps_per_epoch=10,   # meta-steps per "epoch" of the schedules (500)
    msl_epochs=2,         # epochs over which the MSL anneals (10)
    first_order_epochs=0,  # first-order epochs before second order (50)
    eval_n_query=5,       # query images per class of a test task (15)
    test_tasks=100,       # fixed test tasks (600)
    val_tasks=0, eval_every=0, checkpoint_every=0,  # no validation runs
    steps_per_call=10,    # meta-steps per compiled call = per metrics row
    batching="map",       # tasks one after another: faster convs on CPU
    progress=False,
)
OVERRIDES = SMALL_OVERRIDES if SMALL else {}

# %%
# Set-up: on a fresh Colab runtime, install the library; elsewhere nothing.
import importlib
import subprocess
import sys

if "google.colab" in sys.modules:
  subprocess.run(
      [sys.executable, "-m", "pip", "install", "--quiet",
       "metalearn[data] @ git+https://github.com/metalearn-dev/metalearn"],
      check=True)
  importlib.invalidate_caches()

import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import jax
import matplotlib.pyplot as plt
import numpy as np

import metalearn as ml
from metalearn import configs
from metalearn import evaluate
from metalearn import build
from metalearn import runs
from metalearn import train

print("JAX", jax.__version__, "on", jax.devices())
cache_dir = ml.data.ensure_cache(progress=True)  # Omniglot, built once

# %% [markdown]
# ## What adapts
#
# `metalearn.build.build_inner_lrs` gives each parameter tensor an
# `[inner_steps]` rate, or `None` for a tensor the inner loop leaves alone
# (batch-norm affines for both; the whole body for ANIL).

# %%
pp_config = configs.mamlpp(SETTING, algorithm="mamlpp")
pp_config.update(OVERRIDES)
anil_config = configs.mamlpp(SETTING, algorithm="anil")
anil_config.update(OVERRIDES)
for config in (pp_config, anil_config):
  algorithm = ml.ALGORITHMS[config.algorithm]
  print(f"{algorithm.label}: {algorithm.summary}")


def adapted_leaves(config):
  params = build.build_model(config).init(jax.random.key(0))
  lrs = build.build_inner_lrs(config, params)
  flat = jax.tree_util.tree_leaves_with_path(lrs, is_leaf=lambda x: x is None)
  return {jax.tree_util.keystr(path): lr is not None for path, lr in flat}


pp_adapted = adapted_leaves(pp_config)
anil_adapted = adapted_leaves(anil_config)
for name in pp_adapted:
  print(f"{name:28} MAML++: {'adapts' if pp_adapted[name] else '-':7} "
        f"ANIL: {'adapts' if anil_adapted.get(name) else '-'}")

# %% [markdown]
# ## Train both on the same tasks
#
# `metalearn.train.train_and_evaluate` trains, then tests on the fixed test
# tasks; it returns the summary (also written to `eval.json` in the run's
# workdir) and the full `EvalResult`. `metalearn.runs.read_metrics` reads
# the training rows back from the workdir.

# %%
RUNS = None if SMALL else Path.home() / "metalearn_runs"


class Run(NamedTuple):
  """One finished train_and_evaluate run."""
  name: str
  config: object
  workdir: Path
  summary: dict              # eval.json
  test: evaluate.EvalResult  # per task and per inner step
  metrics: runs.Metrics      # the rows of the run's metrics log
  wall_s: float              # compile + meta-training + test, seen from here


def train_run(name, config):
  """Meta-trains and tests `config` with the library, in a fresh workdir."""
  workdir = (RUNS / name if RUNS else
             Path(tempfile.mkdtemp(prefix=f"metalearn-{name}-")))
  start = time.perf_counter()
  summary, test = train.train_and_evaluate(config, workdir)
  wall = time.perf_counter() - start
  return Run(name, config, workdir, summary, test, runs.read_metrics(workdir),
             wall)


pp_run = train_run("mamlpp", pp_config)
anil_run = train_run("anil", anil_config)

# %% [markdown]
# ## Time per meta-step
#
# Medians over the logged chunks of each run (leaving out the calls that
# compiled), on this machine. Where a run switched derivative order
# (`first_order_epochs` at full size), only the second-order rows are
# compared.

# %%
def second_order_step_s(run):
  rows = [r for r in run.metrics.train if not r["compiled"]]
  if any(not r["first_order"] for r in rows):
    rows = [r for r in rows if not r["first_order"]]
  return float(np.median([run.config.meta_batch_size / r["tasks_per_s"]
                          for r in rows]))


pp_s, anil_s = second_order_step_s(pp_run), second_order_step_s(anil_run)
print(f"seconds per meta-step: MAML++ {pp_s:.3f}, ANIL {anil_s:.3f}; "
      f"ANIL / MAML++ = {anil_s / pp_s:.2f}")
print(f"wall (compile + train + test): MAML++ {pp_run.wall_s:.0f} s, "
      f"ANIL {anil_run.wall_s:.0f} s")

# %% [markdown]
# ## Accuracy, and how much the head alone carries
#
# `head only` tests the MAML++ meta-parameters with the body's rates set to
# `None`: the same initialisation, but only the head adapts on each test
# task. `metalearn.runs.restore` brings the MAML++ run back from its workdir
# (config, experiment with its fixed test tasks, meta-parameters) and
# `metalearn.evaluate.evaluate` tests it again. Labels are shuffled per task,
# so an unadapted model scores chance, 1/N. The share of MAML++'s adaptation
# carried by the head is (head-only − chance) / (all layers − chance).

# %%
restored = runs.restore(pp_run.workdir)
exp, meta = restored.experiment, restored.meta
head_only_lrs = jax.tree_util.tree_map_with_path(
    lambda path, lr: lr if "head" in jax.tree_util.keystr(path) else None,
    meta.inner_lrs, is_leaf=lambda x: x is None)
head_only = evaluate.evaluate(
    exp.model.apply, meta.params, head_only_lrs, exp.test_tasks,
    inner_steps=restored.config.eval_inner_steps,
    step_aware=exp.model.step_aware, batching=restored.config.batching,
    chunk_size=restored.config.eval_chunk_size)
results = {
    "MAML++ (all layers adapt)": pp_run.test,
    "MAML++ (head only at test)": head_only,
    "ANIL": anil_run.test,
}
for name, result in results.items():
  print(f"{name:28} {100 * result.accuracy:5.1f}% ± "
        f"{100 * result.ci95:.1f} (std across tasks {100 * result.std:.1f})")
chance = 1 / pp_config.n_way
full = results["MAML++ (all layers adapt)"].accuracy - chance
head = results["MAML++ (head only at test)"].accuracy - chance
print(f"the head alone carries {head / full:.0%} of MAML++'s gain over chance")

# %%
fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(11, 3.6),
                                        gridspec_kw={"width_ratios": [2, 1]})
inner = np.arange(1, pp_config.eval_inner_steps + 1)
for name, result in results.items():
  ax_steps.plot(inner, result.step_accuracy, "o-", label=name)
  ax_steps.errorbar(inner[-1], result.accuracy, yerr=result.ci95, capsize=4,
                    color=ax_steps.lines[-1].get_color())
ax_steps.axhline(chance, ls=":", c="gray", label="chance")
ax_steps.set(xlabel="inner step", ylabel="test accuracy (bar: 95% CI)",
             xticks=inner)
ax_steps.legend()
ax_time.bar(["MAML++", "ANIL"], [pp_s, anil_s], color=["C0", "C2"])
ax_time.set(ylabel="seconds per meta-step", title="measured here")
fig.tight_layout()

# %% [markdown]
# ## What to read from it
#
# * **Cost.** ANIL's inner loop differentiates only the head, and the outer
#   gradient flows back through head updates only; the forward passes
#   through the body remain (the library runs the full model at every inner
#   step), so the saving is less than the parameter count suggests.
# * **Head-only adaptation.** Raghu et al. found that most of what MAML's
#   inner loop does on Omniglot and MiniImageNet is in the head (feature
#   reuse); a large head-only share above says the same of this MAML++ run,
#   a small one that the body's inner-loop updates still matter here (as
#   they can early in training).
# * **At the small size** the network has 8 channels, so the head sees only
#   8 features: a linear head on so few features has little to adapt, and
#   ANIL learns slowly in a few dozen meta-steps. Read the small numbers as a
#   check that everything runs; set `SMALL = False` (64 channels) for the
#   comparison the paper makes.
