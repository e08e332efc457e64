"""Sinusoid regression (Finn et al. 2017, section 5.1): the CPU example.

Run (``ALGORITHM:K``; K support points per task, the paper's 5 or 10; any
algorithm of ``metalearn.ALGORITHMS``, e.g. ``fomaml:10``):
  python experiments/train.py --config=experiments/configs/sinusoid.py:maml:10 \
      --workdir=runs/sinusoid_maml_10

Tasks are ``y = A sin(x - phi)``, A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5]
(``metalearn.data.sinusoid``); the model is the paper's MLP, 2 hidden layers
of 40 ReLU units, with one output; the loss is the mean squared error. As
in the paper: 1 inner SGD step at alpha = 0.01 while training, 10 at test,
25 tasks per meta-step, Adam at 1e-3, 70,000 meta-steps. The paper's code
drew K query points per task; here every task has 10 query points while
training (``n_query``) and 100 at test (``eval_n_query``: the same expected
MSE, measured with less noise).

Measured (time to convergence on a 2-core CPU, MSE after 1 and 10 steps,
MAML against the pretrained baseline): docs/benchmarks.md ("Sine-wave
regression"). At K = 5, 10 steps at 0.01 can diverge on a task whose
support points crowd one end of the range; the mean MSE then jumps while
the median does not.
"""

from metalearn import algorithms
from metalearn import configs


def get_config(arg: str = "maml:10"):
  """``arg`` is ``ALGORITHM[:K]``, e.g. ``maml:5``; K defaults to 10."""
  name, _, shots = arg.partition(":")
  try:
    k_shot = int(shots or 10)
  except ValueError:
    raise ValueError(f"config argument {arg!r}: K must be an integer >= 1, "
                     "as in maml:10.") from None
  if k_shot < 1:
    raise ValueError(f"config argument {arg!r}: K must be >= 1; got "
                     f"{k_shot}.")
  c = configs.base()
  c.algorithm = algorithms.get(name).name
  c.description = f"sinusoid regression, K={k_shot} (Finn et al. 2017, 5.1)"
  # Data: sine tasks drawn on the fly (no files).
  c.dataset = "sinusoid"
  c.rotate = False
  c.n_way = 1               # unused for regression: the model has 1 output.
  c.k_shot = k_shot
  c.n_query = 10            # query points per task while training.
  c.eval_n_query = 100      # query points per val/test task.
  # Model and loss.
  c.model = "mlp"
  c.hidden = (40, 40)
  c.activation = "relu"
  c.loss = "mse"
  # Inner loop.
  c.inner_steps = 1
  c.inner_lr = 0.01
  c.eval_inner_steps = 10
  # Outer loop.
  c.meta_batch_size = 25
  c.meta_steps = 70_000
  c.steps_per_epoch = 1_000
  c.outer_lr = 1e-3
  c.steps_per_call = 1_000
  c.eval_every = c.checkpoint_every = 10_000
  c.val_tasks = 100
  c.test_tasks = 600
  c.eval_chunk_size = 600
  c.batching = "vmap"
  return c
