"""The PyTorch peer's MAML is MAML: its meta-gradients and its meta-steps.

torch is optional (never a dependency of metalearn), so these tests are
skipped where it is not importable. The module imports only the standard
library, pytest and torch, like the script it tests.
"""

import importlib.util
import os

import pytest

torch = pytest.importorskip("torch")

_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "metalearn", "benchmark", "torch_peer.py")
_spec = importlib.util.spec_from_file_location("torch_peer", _SCRIPT)
peer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peer)

# One conv block with 2 filters on 4x4 images, 2-way, 2 inner steps.
_SIZES = dict(filters=2, num_blocks=1, channels=1, image_size=4)
_INNER = dict(inner_steps=2, inner_lr=0.5)


@pytest.fixture(autouse=True)
def _one_thread():
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # Tiny tensors; spare a loaded CPU.
  yield
  torch.set_num_threads(threads)


def _tiny(dtype=torch.float64, seed=0):
  gen = torch.Generator().manual_seed(seed)
  params = peer.init_params(2, generator=gen, dtype=dtype, **_SIZES)
  task = (torch.randn(2, 1, 4, 4, generator=gen, dtype=dtype),
          torch.arange(2),
          torch.randn(4, 1, 4, 4, generator=gen, dtype=dtype),
          torch.tensor([0, 0, 1, 1]))
  return params, task


def _meta_grad(params, task, first_order):
  loss = peer.task_loss(params, task, first_order=first_order, **_INNER)
  return torch.autograd.grad(loss, params)


def _dot(xs, ys):
  return sum(float((x * y).sum()) for x, y in zip(xs, ys))


def test_maml_meta_gradient_matches_finite_differences():
  params, task = _tiny()
  gen = torch.Generator().manual_seed(1)
  direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype)
               for p in params]
  eps = 1e-6

  def loss_at(sign):
    with torch.no_grad():
      moved = [(p + sign * eps * v).requires_grad_()
               for p, v in zip(params, direction)]
    return peer.task_loss(moved, task, first_order=False, **_INNER).item()

  numeric = (loss_at(1) - loss_at(-1)) / (2 * eps)
  maml = _dot(_meta_grad(params, task, False), direction)
  fomaml = _dot(_meta_grad(params, task, True), direction)
  assert maml == pytest.approx(numeric, rel=1e-5, abs=1e-8)
  # First order drops the second-order terms: a different gradient.
  assert abs(fomaml - maml) > 1e-3 * abs(maml)


def test_fomaml_meta_gradient_is_the_query_gradient_at_adapted_params():
  params, task = _tiny()
  support_x, support_y, query_x, query_y = task
  adapted = [p.detach().requires_grad_() for p in peer.adapt(
      params, support_x, support_y, first_order=True, **_INNER)]
  expected = torch.autograd.grad(torch.nn.functional.cross_entropy(
      peer.forward(adapted, query_x), query_y), adapted)
  for got, want in zip(_meta_grad(params, task, True), expected):
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("algorithm", peer.ALGORITHMS)
def test_meta_steps_decrease_the_loss(algorithm):
  gen = torch.Generator().manual_seed(0)
  params = peer.init_params(3, generator=gen, **_SIZES)
  data = peer.synthetic_dataset(gen, image_size=4, channels=1)
  tasks = peer.sample_tasks(data, gen, n_way=3, k_shot=1, n_query=2,
                            meta_batch_size=2)
  assert [t[0].shape for t in tasks] == [(3, 1, 4, 4)] * 2
  assert tasks[0][3].tolist() == [0, 0, 1, 1, 2, 2]
  optimizer = torch.optim.Adam(params, lr=1e-2)
  losses = [peer.meta_step(params, optimizer, tasks, inner_steps=1,
                           inner_lr=0.1, first_order=algorithm == "fomaml")
            for _ in range(30)]
  assert losses[-1] < 0.9 * losses[0]


def test_measure_times_chunks_like_the_benchmark():
  args = peer.parse_args(["--algorithm=fomaml", "--meta_batch_size=2",
                          "--n_way=2", "--n_query=1", "--filters=2",
                          "--num_blocks=1", "--image_size=8", "--warmup=1",
                          "--chunks=3", "--steps_per_chunk=2"])
  result = peer.measure(args)
  assert result["tasks_per_s"] == pytest.approx(2 / result["step_s_median"])
  assert (result["step_s_min"] <= result["step_s_p25"]
          <= result["step_s_median"] <= result["step_s_p75"]
          <= result["step_s_max"])
  assert (result["chunks"], result["steps_per_chunk"]) == (3, 2)
  assert result["torch_version"] == torch.__version__
  with pytest.raises(SystemExit):
    peer.parse_args(["--algorithm=mamlpp"])
