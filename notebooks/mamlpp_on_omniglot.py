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
# # MAML++ on Omniglot: multi-step loss and learned inner rates
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/metalearn-dev/metalearn/blob/main/notebooks/mamlpp_on_omniglot.ipynb)
#
# MAML++ (Antoniou et al., 2019, *How to train your MAML*) keeps MAML's inner
# loop and changes how it is trained. This notebook trains MAML++ with
# [`metalearn`][repo] and, on the same tasks, the same recipe with the MAML++
# components switched off (plain MAML with the same number of inner steps),
# then looks at:
#
# * the **learned per-layer, per-step inner learning rates** (LSLR) as a
#   heatmap,
# * the **multi-step loss** (MSL) weights over training,
# * every test task's **adaptation trajectory** (query loss after each inner
#   step, from `EvalResult.task_step_loss`): does MAML++ adapt more smoothly?
# * the **variance across tasks** of both.
#
# **Set-up.**
#
# * *On Colab*: open it with the badge above. The set-up cell installs
#   `metalearn` (with its `data` extra) from [the repository][repo], and the
#   Omniglot cache is built on first use from TFDS's download (about a
#   minute). For the paper's sizes, pick *Runtime → Change runtime type →
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
#                test tasks); the numbers are far from the paper's.
# SMALL = False: the paper's protocol (metalearn.configs), for a GPU; far
#                longer. Runs then live in ~/metalearn_runs/<name> and resume
#                when the notebook is run again.
SMALL = True
SETTING = "5w1s"  # N-way K-shot: 5w1s, 5w5s, 20w1s or 20w5s.
SMALL_OVERRIDES = dict(
    filters=8,            # conv channels (paper: 64)
    meta_batch_size=4,    # tasks per meta-step (8)
    meta_steps=60,        # (50,000)
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

import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import metalearn as ml
from metalearn import configs
from metalearn import evaluate
from metalearn import runs
from metalearn import schedules
from metalearn import train

print("JAX", jax.__version__, "on", jax.devices())
cache_dir = ml.data.ensure_cache(progress=True)  # Omniglot, built once

# Set METALEARN_FIGURE_DIR to save the figures as PNGs (docs/img was made so).
FIGURES = os.environ.get("METALEARN_FIGURE_DIR")


def save(fig, name):
  if FIGURES:
    fig.savefig(Path(FIGURES) / f"{name}.png", dpi=110, bbox_inches="tight")


# %% [markdown]
# ## The two configs
#
# `metalearn.configs.mamlpp` is the paper's protocol. Its algorithm,
# `mamlpp` in `metalearn.ALGORITHMS`, brings every MAML++ component:
# multi-step loss (annealed over `msl_epochs`), learned per-layer per-step
# inner rates, per-step batch-norm affines and derivative-order annealing
# (`first_order_epochs`); the config adds a cosine outer learning rate
# (`lr_schedule`). The baseline is the same config with `algorithm="maml"`
# and a constant outer rate: plain second-order MAML with a fixed inner rate,
# the loss of the last step only, and the same inner steps, data and test
# tasks.

# %%
pp_config = configs.mamlpp(SETTING, algorithm="mamlpp")
pp_config.update(OVERRIDES)

base_config = configs.mamlpp(SETTING, algorithm="maml")
base_config.update(OVERRIDES)
base_config.lr_schedule = "constant"

pp_algorithm = ml.ALGORITHMS[pp_config.algorithm]
base_algorithm = ml.ALGORITHMS[base_config.algorithm]
for field in ("learn_inner_lrs", "multi_step_loss", "per_step_bn",
              "anneals_order"):
  print(f"{field:20} MAML++: {getattr(pp_algorithm, field)!s:10} "
        f"MAML: {getattr(base_algorithm, field)}")
for field in ("lr_schedule", "inner_steps", "inner_lr", "meta_steps"):
  print(f"{field:20} MAML++: {pp_config[field]!s:10} "
        f"MAML: {base_config[field]}")

# %% [markdown]
# ## Multi-step loss weights
#
# MAML's meta-loss is the query loss after the last inner step. The
# multi-step loss (MSL) is a weighted sum of the query losses after *every*
# step: all weights start equal (1/N), the earlier ones decay linearly to
# 0.03/N over `msl_epochs` epochs and the last takes the rest; after that
# only the last step counts. Early in training every inner step gets a direct
# gradient signal, which stabilises training; later the objective is MAML's
# again. These are the exact weights training uses
# (`metalearn.schedules.msl_weights_fn`).

# %%
weights_fn = schedules.msl_weights_fn(
    pp_config.inner_steps, pp_config.msl_epochs, pp_config.steps_per_epoch)
horizon = min(pp_config.meta_steps,
              (pp_config.msl_epochs + 1) * pp_config.steps_per_epoch)
meta_steps = jnp.arange(horizon + 1)
weights = np.asarray(jax.vmap(weights_fn)(meta_steps))  # [meta-steps, N]
fig, ax = plt.subplots(figsize=(6, 3.4))
for i in range(weights.shape[1]):  # equal early weights: dashes overlap
  ax.plot(meta_steps, weights[:, i], drawstyle="steps-post",
          ls=("-", "--", ":")[i % 3], lw=2, label=f"after inner step {i + 1}")
ax.set(xlabel="meta-step", ylabel="weight in the meta-loss",
       title="MAML++ multi-step loss weights")
ax.legend()
save(fig, "mamlpp_msl_weights")

# %% [markdown]
# ## Train both
#
# `metalearn.train.train_and_evaluate` trains, then tests on the fixed test
# tasks; it returns the summary (also written to `eval.json` in the run's
# workdir) and the full `EvalResult`, per task and per inner step.
# `metalearn.runs.read_metrics` reads the training rows back from the
# workdir.

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


def seconds_per_step(run):
  """Median seconds per meta-step over the logged chunks (leaving out the
  calls that first compiled their program)."""
  return float(np.median([run.config.meta_batch_size / r["tasks_per_s"]
                          for r in run.metrics.train if not r["compiled"]]))


pp_run = train_run("mamlpp", pp_config)
base_run = train_run("maml_same_steps", base_config)

# %%
for run in (pp_run, base_run):
  print(evaluate.format_table(run.test, title=run.name))
  print(f"  {seconds_per_step(run):.3f} s per meta-step, "
        f"{run.wall_s:.0f} s in all\n")

# Same test tasks for both, so compare them task by task (a paired interval).
diff = pp_run.test.task_accuracy - base_run.test.task_accuracy
half = 1.96 * diff.std() / np.sqrt(diff.size)
print(f"MAML++ - MAML, paired over {diff.size} tasks: "
      f"{100 * diff.mean():+.1f} ± {100 * half:.1f} accuracy points (95% CI)")

fig, ax = plt.subplots(figsize=(6, 3.4))
for run in (base_run, pp_run):
  ax.plot(*run.metrics.column("last_step_loss"), label=run.name)
ax.set(xlabel="meta-step", ylabel="query loss after the last inner step",
       title="training tasks")
ax.legend()

# %% [markdown]
# ## Learned inner learning rates
#
# LSLR gives every parameter tensor one learning rate per inner step, all
# initialised to `inner_lr` and meta-learned with the rest.
# `metalearn.runs.restore` brings the run back from its workdir (config,
# experiment, meta-parameters); the heatmap shows the rates after training
# (rows: adapted tensors; batch-norm affines are not adapted in the inner
# loop, their rates are `None`).

# %%
restored = runs.restore(pp_run.workdir)
print(f"restored meta-step {restored.step} of {pp_run.workdir}")


def lr_table(inner_lrs):
  """(row names, [tensors, steps] array) of the adapted leaves."""
  names, rows = [], []
  for path, lr in jax.tree_util.tree_leaves_with_path(inner_lrs):
    names.append("/".join(str(getattr(k, "key", k)) for k in path))
    rows.append(np.asarray(lr))
  return names, np.stack(rows)


names, lrs = lr_table(restored.meta.inner_lrs)
fig, ax = plt.subplots(
    figsize=(1.4 + 1.1 * lrs.shape[1], 0.45 * len(names) + 1.2))
image = ax.imshow(lrs, cmap="viridis", aspect="auto")
for (i, j), value in np.ndenumerate(lrs):
  ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8,
          color="white" if value < lrs.mean() else "black")
ax.set(xticks=range(lrs.shape[1]), yticks=range(len(names)),
       yticklabels=names,
       xticklabels=[f"step {j + 1}" for j in range(lrs.shape[1])],
       title=f"learned inner rates (initial {pp_config.inner_lr})")
fig.colorbar(image, ax=ax)
save(fig, "mamlpp_learned_lrs")
print(f"range {lrs.min():.4f} .. {lrs.max():.4f}; "
      f"mean change per step: {np.round(lrs.mean(0) - pp_config.inner_lr, 4)}")

# %% [markdown]
# ## Adaptation trajectories
#
# Every thin line is one test task: its query loss after each inner step
# (`EvalResult.task_step_loss`, shape `[tasks, steps]`); the thick line is
# the mean. A smooth adaptation goes down at every step; we count the tasks
# whose query loss goes *up* at some step, and how far.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
inner = np.arange(1, pp_run.test.inner_steps + 1)
for ax, run in ((axes[0], base_run), (axes[1], pp_run)):
  ax.plot(inner, run.test.task_step_loss.T, color="C0", alpha=0.15, lw=0.8)
  ax.plot(inner, run.test.step_loss, color="k", lw=2.5, label="mean")
  ax.set(title=run.name, xlabel="inner step", xticks=inner)
  ax.legend()
axes[0].set_ylabel("query loss of each test task")
fig.tight_layout()
save(fig, "mamlpp_trajectories")

for run in (base_run, pp_run):
  rise = np.maximum(np.diff(run.test.task_step_loss, axis=1), 0)
  print(f"{run.name:16} tasks whose loss rises at some step: "
        f"{np.mean(rise.sum(1) > 0):5.1%}; mean rise per task: "
        f"{rise.sum(1).mean():.4f}")

# %% [markdown]
# ## Variance across tasks
#
# The 95% interval above measures the uncertainty of the *mean*; the spread
# of single tasks is the standard deviation across tasks (`EvalResult.std`
# for the final accuracy, and per step for the loss).

# %%
fig, (ax_std, ax_hist) = plt.subplots(1, 2, figsize=(11, 3.6))
bins = np.linspace(0, 1, 11)
for run in (base_run, pp_run):
  result = run.test
  ax_std.plot(inner, result.task_step_loss.std(axis=0), "o-", label=run.name)
  ax_hist.hist(result.task_accuracy, bins=bins, alpha=0.5,
               label=f"{run.name}: std {100 * result.std:.1f} points")
  print(f"{run.name:16} accuracy {100 * result.accuracy:.1f}% ± "
        f"{100 * result.ci95:.1f}, std across tasks {100 * result.std:.1f}; "
        f"query-loss std per step {np.round(result.task_step_loss.std(0), 3)}")
ax_std.set(xlabel="inner step", ylabel="std of query loss across tasks",
           xticks=inner)
ax_hist.set(xlabel="final accuracy of a test task", ylabel="tasks")
ax_std.legend()
ax_hist.legend(loc="upper left")
fig.tight_layout()
save(fig, "mamlpp_task_variance")

# %% [markdown]
# ## What to read from it
#
# * The learned rates show which layers the inner loop wants to move, and how
#   that changes from step to step: a rate that grows means the outer loop
#   found that step of the inner loop too timid for that tensor.
# * With the multi-step loss, every intermediate step is trained to lower the
#   query loss, so trajectories tend to fall at every step instead of only
#   being good at the last one; the rise counts above measure that.
# * At the small size (a few dozen meta-steps of an 8-channel network) the
#   differences are small and noisy; `docs/mamlpp.md` shows a run of this
#   notebook and discusses what it does and does not show. Set
#   `SMALL = False` for the paper's protocol.
