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
# # MAML and FOMAML on Omniglot
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/metalearn-dev/metalearn/blob/main/notebooks/maml_on_omniglot.ipynb)
#
# This notebook meta-trains **MAML** (Finn et al., 2017) on Omniglot 5-way
# 1-shot with [`metalearn`][repo], tests it on fixed held-out tasks (mean
# accuracy ± 95% confidence interval), plots the training curve and the
# accuracy after each inner step, then switches the algorithm to
# **first-order MAML (FOMAML)** on the same tasks and compares time and
# accuracy. Every run is `metalearn.train.train_and_evaluate` on a config of
# `metalearn.configs`: the same code the command-line trainer
# (`experiments/train.py`) runs.
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
# SMALL = False: the papers' protocol (metalearn.configs), for a GPU; far
#                longer. Runs then live in ~/metalearn_runs/<name> and resume
#                when the notebook is run again.
SMALL = True
SETTING = "5w1s"  # N-way K-shot: 5w1s, 5w5s, 20w1s or 20w5s.
SMALL_OVERRIDES = dict(
    filters=8,            # conv channels (paper: 64)
    meta_batch_size=4,    # tasks per meta-step (32)
    meta_steps=300,       # (60,000)
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
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import metalearn as ml
from metalearn import configs
from metalearn import evaluate
from metalearn import runs
from metalearn import train

print("JAX", jax.__version__, "on", jax.devices())
cache_dir = ml.data.ensure_cache(progress=True)  # Omniglot, built once

# %% [markdown]
# ## Omniglot episodes
#
# The cache holds every character as 20 drawings of 28x28 pixels (uint8,
# ink = 1). `load_splits` returns the classes of the train / validation /
# test split the config names; `sample_tasks` draws N-way K-shot episodes
# with `jax.random` (on the accelerator, inside the compiled training step).
# With `rotate=True` a character turned by 90, 180 or 270 degrees counts as a
# new class. Labels 0..N-1 are given to the classes at random in every
# episode, so no fixed class-to-label map can be learned: the model must
# adapt.

# %%
config = configs.maml(SETTING, algorithm="maml")
config.update(OVERRIDES)
splits = ml.data.load_splits(config.dataset, cache_dir)
print({name: images.shape for name, images in splits._asdict().items()})

episodes = ml.data.sample_tasks(
    jax.random.key(0), jnp.asarray(splits.train), n_way=config.n_way,
    k_shot=config.k_shot, n_query=1, batch_size=3, rotate=config.rotate)
cols = min(config.n_way * config.k_shot, 10)
fig, axes = plt.subplots(2 * len(episodes.support_y), cols,
                         figsize=(1.3 * cols, 2.8 * len(episodes.support_y)),
                         squeeze=False)
for t in range(len(episodes.support_y)):
  for row, (x, y, part) in enumerate([
      (episodes.support_x[t], episodes.support_y[t], "support"),
      (episodes.query_x[t], episodes.query_y[t], "query")]):
    for c, ax in enumerate(axes[2 * t + row]):
      ax.set(xticks=[], yticks=[])
      if c < len(y):
        ax.imshow(x[c, ..., 0], cmap="gray_r")
        ax.set_title(f"{part} y={int(y[c])}", fontsize=8)
    axes[2 * t + row, 0].set_ylabel(f"episode {t + 1}")
fig.suptitle(f"{config.n_way}-way {config.k_shot}-shot training episodes")
fig.tight_layout()

# %% [markdown]
# ## Meta-train MAML
#
# `metalearn.configs.maml` holds Finn et al.'s settings (for 5w1s: one inner
# SGD step at rate 0.4 while training, three at test time, second-order
# meta-gradient); `OVERRIDES` shrinks it at the small size. `train_and_evaluate`
# compiles the meta-step (task sampling, inner loop, meta-gradient and Adam
# update in one program), trains, and tests on the fixed test tasks. It
# returns the summary (also written to `eval.json` in the run's workdir) and
# the full `EvalResult`; `metalearn.runs.read_metrics` reads the training
# rows back from the workdir.

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
  """Median seconds per meta-step over the logged chunks.

  Every training row times one chunk of `steps_per_call` meta-steps; rows
  whose call first compiled its program are left out.
  """
  return float(np.median([run.config.meta_batch_size / r["tasks_per_s"]
                          for r in run.metrics.train if not r["compiled"]]))


def accuracy_text(run):
  return f"{100 * run.test.accuracy:.1f}% ± {100 * run.test.ci95:.1f}"


print(ml.ALGORITHMS[config.algorithm].label, "-",
      ml.ALGORITHMS[config.algorithm].summary)
maml_run = train_run("maml", config)
print(f"MAML: {accuracy_text(maml_run)} (95% CI over "
      f"{maml_run.test.num_tasks} test tasks), "
      f"{seconds_per_step(maml_run):.3f} s per meta-step, "
      f"{maml_run.wall_s:.0f} s in all")

# %% [markdown]
# ### Training curve and accuracy after each inner step
#
# Each training row is the mean over one chunk of `steps_per_call`
# meta-steps of the query loss and accuracy after the last inner step (on
# the training tasks, after adaptation). The right panel is the test
# accuracy after each inner step: the model was meta-trained with
# `config.inner_steps` steps and is tested with `config.eval_inner_steps`.

# %%
def plot_runs(runs_):
  fig, (ax_loss, ax_acc, ax_steps) = plt.subplots(1, 3, figsize=(14, 3.6))
  for run in runs_:
    ax_loss.plot(*run.metrics.column("last_step_loss"), label=run.name)
    ax_acc.plot(*run.metrics.column("accuracy"), label=run.name)
    inner = np.arange(1, run.test.inner_steps + 1)
    ax_steps.plot(inner, run.test.step_accuracy, "o-", label=run.name)
    ax_steps.errorbar(inner[-1], run.test.accuracy, yerr=run.test.ci95,
                      capsize=4, color=ax_steps.lines[-1].get_color())
  ax_loss.set(xlabel="meta-step", ylabel="query loss (training tasks)")
  ax_acc.set(xlabel="meta-step", ylabel="query accuracy (training tasks)")
  ax_steps.axhline(1 / runs_[0].config.n_way, ls=":", c="gray",
                   label="chance")
  ax_steps.axvline(runs_[0].config.inner_steps, ls="--", c="gray", lw=0.8)
  ax_steps.set(xlabel="inner step (dashed: steps while training)",
               ylabel="test accuracy (bar: 95% CI)", xticks=inner)
  for ax in (ax_loss, ax_acc, ax_steps):
    ax.legend()
  fig.tight_layout()


print(evaluate.format_table(maml_run.test, title="MAML test"))
plot_runs([maml_run])

# %% [markdown]
# ## Switch to FOMAML
#
# FOMAML is the same config with `algorithm="fomaml"` (an entry of
# `metalearn.ALGORITHMS` with `first_order=True`): the library wraps each
# inner gradient in `stop_gradient`, so the meta-gradient is the query
# gradient at the adapted parameters and no second derivatives are computed.
# Same seed, same sizes, same test tasks.

# %%
fo_config = configs.maml(SETTING, algorithm="fomaml")
fo_config.update(OVERRIDES)
print(ml.ALGORITHMS["fomaml"].label, "-", ml.ALGORITHMS["fomaml"].summary)
fomaml_run = train_run("fomaml", fo_config)

# %%
both = [maml_run, fomaml_run]
print(f"{'':8} {'test accuracy':>16} {'s / meta-step':>14} {'wall s':>8}")
for run in both:
  print(f"{run.name:8} {accuracy_text(run):>16} "
        f"{seconds_per_step(run):14.3f} {run.wall_s:8.0f}")
print(f"FOMAML / MAML time per meta-step: "
      f"{seconds_per_step(fomaml_run) / seconds_per_step(maml_run):.2f}")
plot_runs(both)

# %% [markdown]
# ## What to read from it
#
# * **Accuracy.** On Omniglot, dropping the second-order terms costs little:
#   Finn et al. report 98.7 ± 0.4% (MAML) and 98.3 ± 0.5% (FOMAML) at 5-way
#   1-shot. At the small size both runs are far from converged; compare the
#   difference with the confidence intervals before reading anything into
#   it.
# * **Time.** `s / meta-step` is the median over the logged chunks, leaving
#   out the calls that compiled (`wall s` includes compiling and testing).
#   FOMAML skips the backward pass through the inner gradients (the
#   Hessian-vector products). How much that saves depends on the number of
#   inner steps, the model and the hardware; the ratio printed above is this
#   machine's.
# * **More inner steps at test time** (right panel) usually keep improving
#   the accuracy a little beyond the one step used while training.
