r"""Writes the three tutorial notebooks (without outputs) from the cells below.

  python notebooks/build_notebooks.py          # (re)write notebooks/*.ipynb
  python notebooks/build_notebooks.py --check  # exit 1 if a notebook differs

The notebooks are committed without outputs; edit the cells here and rerun,
so the set-up text and helpers the three share are written once.
``tests/test_notebooks.py`` executes every notebook at the small size and
checks that the committed files match this script.
"""

import argparse
from pathlib import Path
import sys

import nbformat

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- shared cells

SETUP_MD = r"""**Set-up.** Run this notebook from the `notebooks/` folder of the
repository (the experiment configs live in `experiments/configs/`, next to
the package).

* *Locally* (a CPU is enough at the small size): from the repository root,
  `pip install -e ".[data,notebooks]"`, plus Jupyter to open the notebook.
  The Omniglot cache is built once, on first use, from
  `../shared/data/omniglot/` or `$METALEARN_OMNIGLOT_DIR` (see
  `docs/data.md`).
* *On Colab*: *Runtime → Change runtime type → GPU*, then in a first cell

  ```
  !git clone <URL of this repository> metalearn
  %pip install -e "metalearn[cuda12,data]"
  %cd metalearn/notebooks
  ```

  (`cuda12` is the GPU build of JAX; `data` builds the Omniglot cache. If pip
  replaced `jax`, restart the session and `%cd` again.) Put the four Omniglot
  zips from <https://github.com/brendenlake/omniglot/tree/master/python>
  (`images_background.zip`, `images_evaluation.zip`,
  `images_background_small1.zip`, `images_background_small2.zip`) in a
  folder and point the library at it:
  `%env METALEARN_OMNIGLOT_DIR=/content/omniglot`. Then set `SMALL = False`
  in the next cell.

The next cell is the only one to edit: everything that depends on the size of
the runs reads from it."""

SIZE_HEADER = '''\
# The size of every run in this notebook; the only cell to edit.
# SMALL = True : minutes on a 2-core CPU (tiny network, few meta-steps, few
#                test tasks); numbers are far from the papers'.
# SMALL = False: the papers' protocol from experiments/configs/ (a GPU, e.g.
#                Colab; far longer). Runs then live in ../runs/<name> and
#                resume when the notebook is run again.
SMALL = True
SETTING = "5w1s"  # N-way K-shot: 5w1s, 5w5s, 20w1s or 20w5s.
'''

SIZE_FOOTER = '''\
OVERRIDES = SMALL_OVERRIDES if SMALL else {}
RUNS = None if SMALL else "../runs"  # None: a fresh temporary dir per run.
'''

SMALL_COMMON = '''\
    filters=8,            # conv channels (papers: 64)
    meta_batch_size=4,    # tasks per meta-step (papers: 32 / 8)
    eval_n_query=5,       # query images per class of a test task (15)
    test_tasks=100,       # fixed test tasks (600)
    val_tasks=0, eval_every=0, checkpoint_every=0,  # no validation runs
    steps_per_call=10,    # meta-steps per compiled call = per metrics row
    batching="map",       # tasks one after another: faster convs on CPU
'''

IMPORTS = '''\
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path.cwd().resolve().parent  # the notebook runs in <repo>/notebooks
if (ROOT / "experiments").is_dir() and str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))  # experiments/ is not an installed package

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import metalearn as ml
from metalearn import train
'''

RUN_HELPERS = '''\
class Run(NamedTuple):
  """One finished train_and_evaluate run."""
  name: str
  config: Any
  workdir: Path
  summary: dict  # eval.json: test accuracy, 95% CI, per-step accuracy, ...
  rows: list     # the training rows of metrics.jsonl
  wall_s: float  # compile + meta-training + test, as seen from here


def train_run(name, config):
  """Meta-trains and tests `config` with the library, in a fresh workdir."""
  workdir = (Path(RUNS) / name if RUNS else
             Path(tempfile.mkdtemp(prefix=f"metalearn-{name}-")))
  start = time.perf_counter()
  summary = train.train_and_evaluate(config, workdir)
  wall = time.perf_counter() - start
  rows = [json.loads(line)
          for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return Run(name, config, workdir, summary,
             [r for r in rows if "loss" in r], wall)


def seconds_per_step(run, first_order=None):
  """Median seconds per meta-step over the logged chunks.

  Every metrics row times one chunk of `steps_per_call` meta-steps. The first
  chunk of each derivative order also compiled its program, so it is left
  out. `first_order` picks the rows of one order.
  """
  times, compiled = [], set()
  for r in run.rows:
    if r["first_order"] not in compiled:
      compiled.add(r["first_order"])
    elif first_order is None or r["first_order"] == first_order:
      times.append(run.config.meta_batch_size / r["tasks_per_s"])
  return float(np.median(times))


def accuracy_text(run):
  test = run.summary["test"]
  return f"{100 * test['accuracy']:.1f}% ± {100 * test['ci95']:.1f}"
'''

RESTORE_HELPERS = '''\
from metalearn import checkpoints
from metalearn import evaluate


def restore(run):
  """The experiment and meta-parameters that train_and_evaluate tested.

  That is the best state by validation accuracy when the run validated,
  else the last one; the fixed test tasks are rebuilt from the config.
  """
  exp = train.build_experiment(run.config)
  params = exp.model.init(jax.random.key(run.config.seed))
  template = ml.init_meta_state(
      params, train.build_inner_lrs(run.config, params), exp.optimizer,
      learn_inner_lrs=exp.learn_inner_lrs)
  ckpt = checkpoints.Checkpointer(run.workdir)
  state = ckpt.restore_best(template) or ckpt.restore_latest(template)
  return exp, state.meta


def evaluate_run(run, exp, meta, inner_lrs=None):
  """EvalResult on the run's test tasks (per task, per inner step)."""
  return evaluate.evaluate(
      exp.model.apply, meta.params,
      meta.inner_lrs if inner_lrs is None else inner_lrs, exp.test_tasks,
      num_steps=run.config.eval_inner_steps,
      step_aware=exp.model.step_aware, batching=run.config.batching)
'''


def size_cell(extra: str = "") -> str:
  return (SIZE_HEADER + "SMALL_OVERRIDES = dict(\n" + SMALL_COMMON + extra +
          ")\n" + SIZE_FOOTER)


# ------------------------------------------------------------ MAML and FOMAML

MAML = [
    ("md", r"""# MAML and FOMAML on Omniglot

This notebook meta-trains **MAML** (Finn et al., 2017) on Omniglot 5-way
1-shot with `metalearn`, tests it on fixed held-out tasks (mean accuracy ± 95%
confidence interval), plots the training curve and the accuracy after each
inner step, then flips one flag to train **first-order MAML (FOMAML)** on the
same tasks and compares time and accuracy. Every cell calls the library:
`metalearn.train.train_and_evaluate` with the configs in
`experiments/configs/`, the same code the command-line trainer runs.

""" + SETUP_MD),
    ("code", size_cell('''\
    num_steps=300,        # meta-steps (60,000)
''')),
    ("code", IMPORTS + '''\
from experiments.configs import fomaml
from experiments.configs import maml

print("JAX", jax.__version__, "on", jax.devices())
cache_dir = ml.data.ensure_cache()  # builds the Omniglot cache on first use
'''),
    ("code", RUN_HELPERS),
    ("md", r"""## Omniglot episodes

The cache holds every character as 20 drawings of 28x28 pixels (uint8, ink =
1). `load_splits` returns the classes of the train / validation / test split
the config names; `sample_tasks` draws N-way K-shot episodes with
`jax.random` (on the accelerator, inside the compiled training step). With
`rotate=True` a character turned by 90, 180 or 270 degrees counts as a new
class. Labels 0..N-1 are given to the classes at random in every episode, so
no fixed class-to-label map can be learned: the model must adapt."""),
    ("code", '''\
config = maml.get_config(SETTING)
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
'''),
    ("md", r"""## Meta-train MAML

`experiments/configs/maml.py` holds Finn et al.'s settings (for 5w1s: one
inner SGD step at rate 0.4 while training, three at test time, second-order
meta-gradient);
`OVERRIDES` shrinks it at the small size. `train_and_evaluate` compiles the
meta-step (task sampling, inner loop, meta-gradient and Adam update in one
program), trains, and tests on the fixed test tasks; it writes
`metrics.jsonl` and `eval.json` into the run's workdir."""),
    ("code", '''\
maml_run = train_run("maml", config)
print(f"MAML: {accuracy_text(maml_run)} (95% CI over "
      f"{maml_run.summary['test']['num_tasks']} test tasks), "
      f"{seconds_per_step(maml_run):.3f} s per meta-step, "
      f"{maml_run.wall_s:.0f} s in all")
'''),
    ("md", r"""### Training curve and accuracy after each inner step

Each training row is the mean over one chunk of `steps_per_call` meta-steps
of the query loss and accuracy after the last inner step (on the training
tasks, after adaptation). The right panel is the test accuracy after each
inner step: the model was meta-trained for `config.inner_steps` steps and is
tested with `config.eval_inner_steps`."""),
    ("code", '''\
def plot_runs(runs):
  fig, (ax_loss, ax_acc, ax_steps) = plt.subplots(1, 3, figsize=(14, 3.6))
  for run in runs:
    steps = [r["step"] for r in run.rows]
    ax_loss.plot(steps, [r["loss"] for r in run.rows], label=run.name)
    ax_acc.plot(steps, [r["accuracy"] for r in run.rows], label=run.name)
    test = run.summary["test"]
    inner = np.arange(1, test["num_steps"] + 1)
    ax_steps.plot(inner, test["step_accuracy"], "o-", label=run.name)
    ax_steps.errorbar(inner[-1], test["accuracy"], yerr=test["ci95"],
                      capsize=4, color=ax_steps.lines[-1].get_color())
  ax_loss.set(xlabel="meta-step", ylabel="query loss (training tasks)")
  ax_acc.set(xlabel="meta-step", ylabel="query accuracy (training tasks)")
  ax_steps.axhline(1 / runs[0].config.n_way, ls=":", c="gray", label="chance")
  ax_steps.axvline(runs[0].config.inner_steps, ls="--", c="gray", lw=0.8)
  ax_steps.set(xlabel="inner step (dashed: steps while training)",
               ylabel="test accuracy (bar: 95% CI)", xticks=inner)
  for ax in (ax_loss, ax_acc, ax_steps):
    ax.legend()
  fig.tight_layout()


plot_runs([maml_run])
'''),
    ("md", r"""## Flip to FOMAML

FOMAML is the same config with `algorithm = "fomaml"`: the library wraps each
inner gradient in `stop_gradient`, so the meta-gradient is the query gradient
at the adapted parameters and no second derivatives are computed. Same seed,
same sizes, same test tasks."""),
    ("code", '''\
fo_config = fomaml.get_config(SETTING)
fo_config.update(OVERRIDES)
fomaml_run = train_run("fomaml", fo_config)
'''),
    ("code", '''\
runs = [maml_run, fomaml_run]
print(f"{'':8} {'test accuracy':>16} {'s / meta-step':>14} {'wall s':>8}")
for run in runs:
  print(f"{run.name:8} {accuracy_text(run):>16} "
        f"{seconds_per_step(run):14.3f} {run.wall_s:8.0f}")
print(f"FOMAML / MAML time per meta-step: "
      f"{seconds_per_step(fomaml_run) / seconds_per_step(maml_run):.2f}")
plot_runs(runs)
'''),
    ("md", r"""## What to read from it

* **Accuracy.** On Omniglot, dropping the second-order terms costs little:
  Finn et al. report 98.7 ± 0.4% (MAML) and 98.3 ± 0.5% (FOMAML) at 5-way
  1-shot. At the small size both runs are far from converged; compare the
  difference with the confidence intervals before reading anything into it.
* **Time.** `s / meta-step` is the median over the logged chunks, leaving
  out the chunk that compiled (`wall s` includes compiling and testing).
  FOMAML skips the backward pass through the inner gradients (the
  Hessian-vector products). How much that saves depends on the number of
  inner steps, the model and the hardware; the ratio printed above is this
  machine's.
* **More inner steps at test time** (right panel) usually keep improving the
  accuracy a little beyond the one step used while training."""),
]

# ---------------------------------------------------------------- MAML++

MAMLPP = [
    ("md", r"""# MAML++ on Omniglot: multi-step loss and learned inner rates

MAML++ (Antoniou et al., 2019, *How to train your MAML*) keeps MAML's inner
loop and changes how it is trained. This notebook trains MAML++ and, on the
same tasks, the same recipe with the MAML++ components switched off (plain
MAML with the same number of inner steps), then looks at:

* the **learned per-layer, per-step inner learning rates** (LSLR) as a
  heatmap,
* the **multi-step loss** (MSL) weights over training,
* every test task's **adaptation trajectory** (query loss after each inner
  step, from `EvalResult.task_step_loss`): does MAML++ adapt more smoothly?
* the **variance across tasks** of both.

""" + SETUP_MD),
    ("code", size_cell('''\
    num_steps=60,         # meta-steps (50,000)
    inner_steps=3, eval_inner_steps=3,  # (5)
    iters_per_epoch=10,   # meta-steps per "epoch" of the schedules (500)
    msl_epochs=2,         # epochs over which the MSL anneals (10)
    first_order_epochs=0, # first-order epochs before second order (50)
''')),
    ("code", IMPORTS + '''\
import os

from experiments.configs import mamlpp

print("JAX", jax.__version__, "on", jax.devices())
cache_dir = ml.data.ensure_cache()  # builds the Omniglot cache on first use

# Set METALEARN_FIGURE_DIR to save the figures as PNGs (docs/img was made so).
FIGURES = os.environ.get("METALEARN_FIGURE_DIR")


def save(fig, name):
  if FIGURES:
    fig.savefig(Path(FIGURES) / f"{name}.png", dpi=110, bbox_inches="tight")
'''),
    ("code", RUN_HELPERS + "\n\n" + RESTORE_HELPERS),
    ("md", r"""## The two configs

`experiments/configs/mamlpp.py` turns on every MAML++ component: multi-step
loss (`msl_epochs`), learned inner rates (`learn_inner_lrs`), per-step
batch-norm affines (`per_step_bn`), derivative-order annealing
(`first_order_epochs`) and a cosine outer learning rate (`lr_schedule`). The
baseline is the same config with all of them off: plain second-order MAML
with a fixed inner rate, the loss of the last step only, and the same inner
steps, data and test tasks."""),
    ("code", '''\
pp_config = mamlpp.get_config(SETTING)
pp_config.update(OVERRIDES)

base_config = mamlpp.get_config(SETTING)
base_config.update(OVERRIDES)
base_config.update(dict(algorithm="maml", learn_inner_lrs=False, msl_epochs=0,
                        per_step_bn=False, first_order_epochs=0,
                        lr_schedule="constant"))
for field in ("learn_inner_lrs", "msl_epochs", "per_step_bn",
              "first_order_epochs", "lr_schedule", "inner_steps", "inner_lr"):
  print(f"{field:20} MAML++: {pp_config[field]!s:10} "
        f"MAML: {base_config[field]}")
'''),
    ("md", r"""## Multi-step loss weights

MAML's meta-loss is the query loss after the last inner step. The multi-step
loss (MSL) is a weighted sum of the query losses after *every* step: all
weights start equal (1/N), the earlier ones decay linearly to 0.03/N over
`msl_epochs` epochs and the last takes the rest; after that only the last
step counts. Early in training every inner step gets a direct gradient
signal, which stabilises training; later the objective is MAML's again.
These are the exact weights training uses (`train.step_weights_fn`)."""),
    ("code", '''\
weights_fn = train.step_weights_fn(pp_config)
horizon = min(pp_config.num_steps,
              (pp_config.msl_epochs + 1) * pp_config.iters_per_epoch)
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
'''),
    ("md", "## Train both"),
    ("code", '''\
pp_run = train_run("mamlpp", pp_config)
base_run = train_run("maml_same_steps", base_config)
'''),
    ("code", '''\
pp_exp, pp_meta = restore(pp_run)
base_exp, base_meta = restore(base_run)
pp_result = evaluate_run(pp_run, pp_exp, pp_meta)
base_result = evaluate_run(base_run, base_exp, base_meta)
for run, result in ((pp_run, pp_result), (base_run, base_result)):
  # The restored parameters are the ones train_and_evaluate tested.
  np.testing.assert_allclose(result.accuracy, run.summary["test"]["accuracy"],
                             atol=1e-6)
  print(evaluate.format_table(result, title=run.name))
  print(f"  {seconds_per_step(run):.3f} s per meta-step, "
        f"{run.wall_s:.0f} s in all\\n")

# Same test tasks for both, so compare them task by task (a paired interval).
diff = pp_result.task_accuracy - base_result.task_accuracy
half = 1.96 * diff.std() / np.sqrt(diff.size)
print(f"MAML++ - MAML, paired over {diff.size} tasks: "
      f"{100 * diff.mean():+.1f} ± {100 * half:.1f} accuracy points (95% CI)")
'''),
    ("md", r"""## Learned inner learning rates

LSLR gives every parameter tensor one learning rate per inner step, all
initialised to `inner_lr` and meta-learned with the rest. The heatmap shows
them after training (rows: adapted tensors; batch-norm affines are not
adapted in the inner loop, their rates are `None`)."""),
    ("code", '''\
def lr_table(inner_lrs):
  """(row names, [tensors, steps] array) of the adapted leaves."""
  names, rows = [], []
  for path, lr in jax.tree_util.tree_leaves_with_path(inner_lrs):
    names.append("/".join(str(getattr(k, "key", k)) for k in path))
    rows.append(np.asarray(lr))
  return names, np.stack(rows)


names, lrs = lr_table(pp_meta.inner_lrs)
fig, ax = plt.subplots(
    figsize=(1.4 + 1.1 * lrs.shape[1], 0.45 * len(names) + 1.2))
image = ax.imshow(lrs, cmap="viridis", aspect="auto")
for (i, j), value in np.ndenumerate(lrs):
  ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8,
          color="white" if value < lrs.mean() else "black")
ax.set(xticks=range(lrs.shape[1]), yticks=range(len(names)), yticklabels=names,
       xticklabels=[f"step {j + 1}" for j in range(lrs.shape[1])],
       title=f"learned inner rates (initial {pp_config.inner_lr})")
fig.colorbar(image, ax=ax)
save(fig, "mamlpp_learned_lrs")
print(f"range {lrs.min():.4f} .. {lrs.max():.4f}; "
      f"mean change per step: {np.round(lrs.mean(0) - pp_config.inner_lr, 4)}")
'''),
    ("md", r"""## Adaptation trajectories

Every thin line is one test task: its query loss after each inner step
(`EvalResult.task_step_loss`, shape `[tasks, steps]`); the thick line is the
mean. A smooth adaptation goes down at every step; we count the tasks whose
query loss goes *up* at some step, and how far."""),
    ("code", '''\
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
inner = np.arange(1, pp_result.num_steps + 1)
for ax, run, result in ((axes[0], base_run, base_result),
                        (axes[1], pp_run, pp_result)):
  ax.plot(inner, result.task_step_loss.T, color="C0", alpha=0.15, lw=0.8)
  ax.plot(inner, result.step_loss, color="k", lw=2.5, label="mean")
  ax.set(title=run.name, xlabel="inner step", xticks=inner)
  ax.legend()
axes[0].set_ylabel("query loss of each test task")
fig.tight_layout()
save(fig, "mamlpp_trajectories")

for run, result in ((base_run, base_result), (pp_run, pp_result)):
  rise = np.maximum(np.diff(result.task_step_loss, axis=1), 0)
  print(f"{run.name:16} tasks whose loss rises at some step: "
        f"{np.mean(rise.sum(1) > 0):5.1%}; mean rise per task: "
        f"{rise.sum(1).mean():.4f}")
'''),
    ("md", r"""## Variance across tasks

The 95% interval above measures the uncertainty of the *mean*; the spread of
single tasks is the standard deviation across tasks (`EvalResult.std` for the
final accuracy, and per step for the loss)."""),
    ("code", '''\
fig, (ax_std, ax_hist) = plt.subplots(1, 2, figsize=(11, 3.6))
bins = np.linspace(0, 1, 11)
for run, result in ((base_run, base_result), (pp_run, pp_result)):
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
'''),
    ("md", r"""## What to read from it

* The learned rates show which layers the inner loop wants to move, and how
  that changes from step to step: a rate that grows means the outer loop
  found that step of the inner loop too timid for that tensor.
* With the multi-step loss, every intermediate step is trained to lower the
  query loss, so trajectories tend to fall at every step instead of only
  being good at the last one; the rise counts above measure that.
* At the small size (a few dozen meta-steps of an 8-channel network) the
  differences are small and noisy; `docs/mamlpp.md` shows a run of this
  notebook and discusses what it does and does not show. Set `SMALL = False`
  for the paper's protocol."""),
]

# ---------------------------------------------------------------- ANIL

ANIL = [
    ("md", r"""# ANIL with learned inner rates vs MAML++ on Omniglot

ANIL (Raghu et al., 2020, *Rapid learning or feature reuse?*) adapts only
the classifier head in the inner loop; the body (the conv layers) is learned
by the outer loop alone. In `metalearn` it is `config.inner_adapt = "head"`:
the body's inner learning rates are `None`, so the inner loop never computes
a gradient for it, while the head keeps MAML++'s learned per-step rates and
the multi-step loss (`experiments/configs/anil.py`). On the same tasks as
MAML++, this notebook measures:

* test accuracy of both;
* the time per meta-step of both (ANIL should be cheaper);
* how much of MAML++'s adaptation the head alone carries: the MAML++
  meta-parameters tested again with only the head adapting.

""" + SETUP_MD),
    ("code", size_cell('''\
    num_steps=100,        # meta-steps (50,000)
    inner_steps=3, eval_inner_steps=3,  # (5)
    iters_per_epoch=10,   # meta-steps per "epoch" of the schedules (500)
    msl_epochs=2,         # epochs over which the MSL anneals (10)
    first_order_epochs=0, # first-order epochs before second order (50)
''')),
    ("code", IMPORTS + '''\
from experiments.configs import anil
from experiments.configs import mamlpp

print("JAX", jax.__version__, "on", jax.devices())
cache_dir = ml.data.ensure_cache()  # builds the Omniglot cache on first use
'''),
    ("code", RUN_HELPERS + "\n\n" + RESTORE_HELPERS),
    ("md", r"""## What adapts

`train.build_inner_lrs` gives each parameter tensor a `[inner_steps]` rate,
or `None` for a tensor the inner loop leaves alone."""),
    ("code", '''\
pp_config = mamlpp.get_config(SETTING)
pp_config.update(OVERRIDES)
anil_config = anil.get_config(SETTING)
anil_config.update(OVERRIDES)


def adapted_leaves(config):
  params = train.build_model(config).init(jax.random.key(0))
  lrs = train.build_inner_lrs(config, params)
  flat = jax.tree_util.tree_leaves_with_path(lrs, is_leaf=lambda x: x is None)
  return {jax.tree_util.keystr(path): lr is not None for path, lr in flat}


pp_adapted = adapted_leaves(pp_config)
anil_adapted = adapted_leaves(anil_config)
for name in pp_adapted:
  print(f"{name:28} MAML++: {'adapts' if pp_adapted[name] else '-':7} "
        f"ANIL: {'adapts' if anil_adapted.get(name) else '-'}")
'''),
    ("md", "## Train both on the same tasks"),
    ("code", '''\
pp_run = train_run("mamlpp", pp_config)
anil_run = train_run("anil", anil_config)
'''),
    ("md", r"""## Time per meta-step

Medians over the logged chunks of each run (`metrics.jsonl`; the chunks
that compiled are left out), on this machine. Where a run switched
derivative order (`first_order_epochs` at full size), the second-order rows
are compared."""),
    ("code", '''\
def second_order_step_s(run):
  orders = {r["first_order"] for r in run.rows}
  return seconds_per_step(run, first_order=False if False in orders else None)


pp_s, anil_s = second_order_step_s(pp_run), second_order_step_s(anil_run)
print(f"seconds per meta-step: MAML++ {pp_s:.3f}, ANIL {anil_s:.3f}; "
      f"ANIL / MAML++ = {anil_s / pp_s:.2f}")
print(f"wall (compile + train + test): MAML++ {pp_run.wall_s:.0f} s, "
      f"ANIL {anil_run.wall_s:.0f} s")
'''),
    ("md", r"""## Accuracy, and how much the head alone carries

`head only` tests the MAML++ meta-parameters with the body's rates set to
`None`: the same initialisation, but only the head adapts on each test task.
Labels are shuffled per task, so an unadapted model scores chance, 1/N. The
share of MAML++'s adaptation carried by the head is
(head-only − chance) / (all layers − chance)."""),
    ("code", '''\
pp_exp, pp_meta = restore(pp_run)
anil_exp, anil_meta = restore(anil_run)
head_only_lrs = jax.tree_util.tree_map_with_path(
    lambda path, lr: lr if "head" in jax.tree_util.keystr(path) else None,
    pp_meta.inner_lrs, is_leaf=lambda x: x is None)
results = {
    "MAML++ (all layers adapt)": evaluate_run(pp_run, pp_exp, pp_meta),
    "MAML++ (head only at test)": evaluate_run(pp_run, pp_exp, pp_meta,
                                               head_only_lrs),
    "ANIL": evaluate_run(anil_run, anil_exp, anil_meta),
}
np.testing.assert_allclose(results["ANIL"].accuracy,
                           anil_run.summary["test"]["accuracy"], atol=1e-6)
for name, result in results.items():
  print(f"{name:28} {100 * result.accuracy:5.1f}% ± {100 * result.ci95:.1f} "
        f"(std across tasks {100 * result.std:.1f})")
chance = 1 / pp_config.n_way
full = results["MAML++ (all layers adapt)"].accuracy - chance
head = results["MAML++ (head only at test)"].accuracy - chance
print(f"the head alone carries {head / full:.0%} of MAML++'s gain over chance")
'''),
    ("code", '''\
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
'''),
    ("md", r"""## What to read from it

* **Cost.** ANIL's inner loop differentiates only the head, and the outer
  gradient flows back through head updates only; the forward passes through
  the body remain (the library runs the full model at every inner step), so
  the saving is less than the parameter count suggests.
* **Head-only adaptation.** Raghu et al. found that most of what MAML's inner
  loop does on Omniglot and MiniImageNet is in the head (feature reuse); a
  large head-only share above says the same of this MAML++ run, a small one
  that the body's inner-loop updates still matter here (as they can early in
  training).
* **At the small size** the network has 8 channels, so the head sees only 8
  features: a linear head on so few features has little to adapt, and ANIL
  learns slowly in a few dozen meta-steps. Read the small numbers as a check
  that everything runs; set `SMALL = False` (64 channels) for the
  comparison the paper makes."""),
]

NOTEBOOKS = {
    "maml_on_omniglot.ipynb": MAML,
    "mamlpp_on_omniglot.ipynb": MAMLPP,
    "anil_adaptive_on_omniglot.ipynb": ANIL,
}


def build(cells) -> nbformat.NotebookNode:
  """A v4 notebook without outputs from (kind, source) pairs."""
  nb = nbformat.v4.new_notebook()
  nb.metadata = {
      "kernelspec": {"display_name": "Python 3", "language": "python",
                     "name": "python3"},
      "language_info": {"name": "python"},
  }
  make = {"md": nbformat.v4.new_markdown_cell,
          "code": nbformat.v4.new_code_cell}
  nb.cells = [make[kind](source.strip("\n")) for kind, source in cells]
  for i, cell in enumerate(nb.cells):
    cell.id = f"cell-{i:02d}"  # stable ids: rebuilding changes nothing
  nbformat.validate(nb)
  return nb


def render(cells) -> str:
  return nbformat.writes(build(cells)) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="report notebooks that differ; write nothing")
  args = parser.parse_args(argv)
  stale = []
  for name, cells in NOTEBOOKS.items():
    path = HERE / name
    text = render(cells)
    if args.check:
      if not path.is_file() or path.read_text() != text:
        stale.append(name)
    else:
      path.write_text(text)
      print(f"wrote {path}")
  if stale:
    print("out of date (run python notebooks/build_notebooks.py): "
          + ", ".join(stale))
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
