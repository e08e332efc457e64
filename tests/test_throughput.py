"""Throughput curves at toy sizes: points, a child with 2 devices, files."""

import json

import jax
import pytest

from metalearn.benchmark import Workload
from metalearn.benchmark import throughput

TOY = Workload()._replace(meta_batch_size=2, n_way=2, n_query=1, filters=2,
                          num_blocks=1, image_size=8)


@pytest.fixture(scope="module")
def point():
  return throughput.measure_point(TOY, 1, curve="meta_batch", steps=1,
                                  warmup=1)


def test_point_has_speed_memory_and_flops(point):
  assert point.error is None
  assert point.tasks_per_s == pytest.approx(2 / point.step_s)
  assert point.flops_per_step > 0
  assert point.flops_per_s == pytest.approx(point.flops_per_step /
                                            point.step_s)
  assert point.xla_temp_bytes is None or point.xla_temp_bytes > 0


def test_point_over_the_memory_budget_is_skipped():
  p = throughput.measure_point(TOY, 1, curve="meta_batch",
                               max_temp_bytes=1)
  if p.xla_temp_bytes is None:
    pytest.skip("this backend reports no XLA scratch bytes")
  assert p.error.startswith("skipped") and p.step_s is None


def test_device_curve_runs_each_count_in_a_child():
  if jax.default_backend() != "cpu":
    pytest.skip("simulated devices are a CPU feature")
  (p,) = throughput.device_curve(TOY, [2], steps=1, warmup=0,
                                 timeout_s=240, log=lambda _: None)
  assert p.error is None, p.error
  assert (p.curve, p.devices, p.meta_batch_size) == ("devices", 2, 2)
  assert p.tasks_per_s > 0


def test_matmul_reference_and_fraction(point):
  matmul = throughput.matmul_flops_per_s(size=64, repeats=2)
  assert matmul > 0
  (p,) = throughput.with_fraction([point], matmul)
  assert p.matmul_fraction == pytest.approx(point.flops_per_s / matmul)


def test_write_makes_json_markdown_and_plots(point, tmp_path):
  failed = throughput.Point("devices", 4, 2, error="only 1 devices")
  result = {
      "command": "python experiments/throughput.py", "matmul_size": 64,
      "matmul_flops_per_s": 1e9, "workload_text": "toy",
      "environment": {"device": "cpu", "device_count": 1, "cpu": "x",
                      "cpu_count": 2, "load_average_at_start": None,
                      "jax": jax.__version__, "commit": "abc"},
      "meta_batch": [point._asdict()],
      "devices": [point._replace(curve="devices")._asdict(),
                  failed._asdict()],
  }
  paths = throughput.write(result, tmp_path)
  names = sorted(p.split("/")[-1] for p in paths)
  assert names == ["results.json", "results.md", "throughput_devices.png",
                   "throughput_meta_batch.png"]
  assert json.loads((tmp_path / "results.json").read_text()) == result
  text = (tmp_path / "results.md").read_text()
  assert "| 4 | 2 | - |" in text and "only 1 devices" in text
  assert (tmp_path / "throughput_devices.png").stat().st_size > 1000
